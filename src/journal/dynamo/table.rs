//! The table: its name in a store URL (`table_of`), and `cutover store init`, which creates it once.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableDescription, TableStatus,
};
use tracing::info;

use super::{SCHEME, client, store_error};
use crate::journal::JournalError;

/// How long `init` waits for a new table to become active (DynamoDB takes seconds).
const ACTIVE_WITHIN: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_secs(1);

/// The table name of a store URL: `dynamodb://TABLE`, TABLE a DynamoDB table name (3–255 of
/// `A-Z a-z 0-9 _ - .`). Anything else is refused, naming the URL and the accepted form.
pub fn table_of(url: &str) -> Result<&str, JournalError> {
    let refuse = |why: &str| {
        JournalError::Store(format!(
            "{url:?} is not a store URL ({why}); accepted: dynamodb://TABLE, with TABLE a DynamoDB table name \
             (3-255 letters, digits, '_', '-' or '.')"
        ))
    };
    let table = url.strip_prefix(SCHEME).ok_or_else(|| refuse("unknown scheme"))?;
    if !(3..=255).contains(&table.len()) {
        return Err(refuse("the table name must be 3-255 characters"));
    }
    if let Some(c) = table
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(refuse(&format!("{c:?} cannot be in a table name")));
    }
    Ok(table)
}

/// Creates the store's table if it does not exist (on demand, key `pk` (S, HASH) + `sk`
/// (S, RANGE), deletion protection on) and waits until it is active. Idempotent: with the table
/// there, it checks its key and says so. A table with another key is refused.
pub async fn init(conf: &SdkConfig, table: &str) -> Result<(), JournalError> {
    let client = client(conf);
    let existing = match describe(&client, table).await? {
        Some(existing) => {
            info!("DynamoDB table {table} exists");
            existing
        }
        None => match create(&client, table).await? {
            true => {
                info!("creating DynamoDB table {table} (on demand, key pk + sk)");
                wait_active(&client, table).await?
            }
            // Someone else created it between the two calls.
            false => wait_active(&client, table).await?,
        },
    };
    check_key(table, &existing)?;
    if existing.table_status() != Some(&TableStatus::Active) {
        wait_active(&client, table).await?;
    }
    info!("DynamoDB table {table} is active");
    Ok(())
}

/// The table, or `None` if it does not exist.
async fn describe(client: &Client, table: &str) -> Result<Option<TableDescription>, JournalError> {
    match client.describe_table().table_name(table).send().await {
        Ok(out) => Ok(out.table().cloned()),
        Err(e)
            if matches!(
                e.as_service_error(),
                Some(DescribeTableError::ResourceNotFoundException(_))
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(store_error(table, "DescribeTable", e)),
    }
}

/// Creates the table: `false` if it exists already.
async fn create(client: &Client, table: &str) -> Result<bool, JournalError> {
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("an attribute definition with its name and type")
    };
    let key = |name: &str, key_type: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .expect("a key schema element with its name and type")
    };
    let created = client
        .create_table()
        .table_name(table)
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .deletion_protection_enabled(true)
        .send()
        .await;
    match created {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.as_service_error(), Some(CreateTableError::ResourceInUseException(_))) => Ok(false),
        Err(e) => Err(store_error(table, "CreateTable", e)),
    }
}

async fn wait_active(client: &Client, table: &str) -> Result<TableDescription, JournalError> {
    let deadline = tokio::time::Instant::now() + ACTIVE_WITHIN;
    loop {
        if let Some(t) = describe(client, table).await?
            && t.table_status() == Some(&TableStatus::Active)
        {
            return Ok(t);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(JournalError::Store(format!(
                "DynamoDB table {table} is not active after {}s",
                ACTIVE_WITHIN.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The store needs exactly the key `pk` (S, HASH) + `sk` (S, RANGE).
fn check_key(table: &str, t: &TableDescription) -> Result<(), JournalError> {
    let key: Vec<(&str, &KeyType)> = t
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type()))
        .collect();
    let string = |name: &str| {
        t.attribute_definitions()
            .iter()
            .any(|a| a.attribute_name() == name && a.attribute_type() == &ScalarAttributeType::S)
    };
    if key == [("pk", &KeyType::Hash), ("sk", &KeyType::Range)] && string("pk") && string("sk") {
        return Ok(());
    }
    let found: Vec<String> = key.iter().map(|(name, kind)| format!("{name} ({kind})")).collect();
    Err(JournalError::Store(format!(
        "DynamoDB table {table} exists with the key {}; the store needs pk (S, HASH) + sk (S, RANGE): \
         name another table",
        found.join(" + ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_url_names_a_table() {
        assert_eq!(table_of("dynamodb://cutover-state").unwrap(), "cutover-state");
        assert_eq!(table_of("dynamodb://a.b_c-1").unwrap(), "a.b_c-1");
    }

    #[test]
    fn anything_but_a_dynamodb_url_is_refused_with_the_accepted_form() {
        for url in [
            "s3://bucket",
            "dynamodb:/t",
            "DYNAMODB://table",
            "dynamodb://",
            "dynamodb://ab",
            "dynamodb://table/extra",
            "dynamodb://table?region=x",
            "/var/lib/cutover",
        ] {
            let e = table_of(url).unwrap_err().to_string();
            assert!(e.contains(&format!("{url:?}")), "{e}");
            assert!(e.contains("dynamodb://TABLE"), "{e}");
        }
        let long = format!("dynamodb://{}", "t".repeat(256));
        assert!(table_of(&long).is_err());
    }
}
