//! The two colours and the split of traffic between them: the vocabulary that the saga,
//! `traffic` and `metrics` share. Pure: no IO.
//!
//! A [`Split`] holds raw ALB weights (0–999 per target group). cutover writes the new
//! colour's share on a 0–1000 scale with 1000 written as 999, so 50 % is 500/500 and
//! 100 % is 0/999: the share is what counts.

use serde::{Deserialize, Serialize};

/// The largest ALB weight of one target group.
pub const MAX_WEIGHT: i32 = 999;

/// One of the two target groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Blue,
    Green,
}

impl Color {
    pub fn other(self) -> Color {
        match self {
            Color::Blue => Color::Green,
            Color::Green => Color::Blue,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }
}

impl std::fmt::Display for Color {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Color {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "blue" => Ok(Color::Blue),
            "green" => Ok(Color::Green),
            other => Err(format!("expected blue or green, got {other:?}")),
        }
    }
}

/// The raw ALB weights of the forward action: blue, green, and the sum of any other target groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub blue: i32,
    pub green: i32,
    pub others: i32,
}

impl Split {
    /// All traffic on `color`.
    pub fn all_on(color: Color) -> Split {
        Split::with_new(color, 1000)
    }

    /// `permille` tenths of a percent on `new`, the rest on the other colour.
    /// Weights are on a 0–1000 scale, with 1000 written as 999 (the ALB maximum):
    /// the share is what counts, and 999 of 999 is still 100 %.
    pub fn with_new(new: Color, permille: u32) -> Split {
        let n = (permille.min(1000) as i32).min(MAX_WEIGHT);
        let l = (1000 - permille.min(1000) as i32).min(MAX_WEIGHT);
        match new {
            Color::Blue => Split {
                blue: n,
                green: l,
                others: 0,
            },
            Color::Green => Split {
                blue: l,
                green: n,
                others: 0,
            },
        }
    }

    pub fn weight(&self, color: Color) -> i32 {
        match color {
            Color::Blue => self.blue,
            Color::Green => self.green,
        }
    }

    /// The share of `color` in percent.
    pub fn percent(&self, color: Color) -> f64 {
        let total = self.blue + self.green + self.others;
        if total <= 0 {
            0.0
        } else {
            100.0 * self.weight(color) as f64 / total as f64
        }
    }

    /// The colour that holds all traffic, if one does.
    pub fn holder(&self) -> Option<Color> {
        match (self.blue > 0, self.green > 0, self.others > 0) {
            (true, false, false) => Some(Color::Blue),
            (false, true, false) => Some(Color::Green),
            _ => None,
        }
    }

    /// The shares of blue and green in percent, rounded to 0.1, for summaries.
    pub fn percents(&self) -> Percents {
        Percents {
            blue: round1(self.percent(Color::Blue)),
            green: round1(self.percent(Color::Green)),
        }
    }
}

/// The shares of the two colours in percent: `{"blue": 50.0, "green": 50.0}` in summaries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percents {
    pub blue: f64,
    pub green: f64,
}

impl std::fmt::Display for Percents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "blue {}% green {}%", self.blue, self.green)
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "blue {}% green {}% (weights {}/{}",
            round1(self.percent(Color::Blue)),
            round1(self.percent(Color::Green)),
            self.blue,
            self.green
        )?;
        if self.others != 0 {
            write!(f, ", others {}", self.others)?;
        }
        f.write_str(")")
    }
}
