//! The shared store (`journal::DynamoStore`) against moto: the store contract the memory and
//! local stores keep, appends racing from many writers, the lease rules in real time (a holder
//! cut off from the table through the fault proxy), and `init`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use cutover::journal::{
    self, Cursor, DynamoStore, Journal, JournalError, LEASE_MARGIN, LEASE_RENEW, LEASE_TTL, Store, dynamo,
};
use cutover::saga::{Event, Level, Trigger};

use crate::fault_proxy::{FaultProxy, Faults, Rule};
use crate::util::{Moto, sdk};

const TABLE: &str = "cutover-state";
const TARGET: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2";

/// A moto with the store's table, and a store on it.
async fn table() -> (Moto, aws_config::SdkConfig, DynamoStore) {
    let moto = Moto::start();
    let conf = sdk(&moto.endpoint).await;
    dynamo::init(&conf, TABLE).await.expect("init the table");
    let store = DynamoStore::new(&conf, TABLE);
    (moto, conf, store)
}

fn note(message: &str) -> Event {
    Event::Note {
        step: None,
        level: Level::Info,
        message: message.to_string(),
    }
}

fn message(event: &Event) -> &str {
    match event {
        Event::Note { message, .. } => message,
        other => panic!("not a note: {other:?}"),
    }
}

fn wall(rfc3339: &str) -> SystemTime {
    humantime::parse_rfc3339(rfc3339).expect("an RFC 3339 time")
}

/// The memory store's contract (`journal::memory` tests), with two handles that share nothing
/// but the table, as two processes would.
#[tokio::test]
async fn the_dynamodb_store_keeps_the_store_contract() {
    let (_moto, conf, store) = table().await;
    let other: Arc<dyn Store> = Arc::new(DynamoStore::new(&conf, TABLE));
    let store: Arc<dyn Store> = Arc::new(store);
    assert_eq!(store.describe(), format!("DynamoDB table {TABLE}"));

    let plan = "[service]\nname = \"checkout\" # ünïcode, quotes \" and newlines\n";
    let id = store.create(plan).await.unwrap();
    // An empty journal is not a missing one, also for a handle that has never seen it.
    assert_eq!(other.read(&id, Cursor::default()).await.unwrap().0, vec![]);

    let a = Journal::new(store.clone(), &id);
    let b = Journal::new(other.clone(), &id);
    let mut reader = a.reader();
    let first = a.append(&Event::StepStarted { step: 0 }).await.unwrap();
    let second = b
        .append(&Event::RollbackRequested {
            trigger: Trigger::Operator,
            reason: "r".into(),
            by: "me".into(),
        })
        .await
        .unwrap();
    let got = reader.read_new().await.unwrap();
    assert_eq!(
        got,
        vec![first, second],
        "ordered appends from two handles, read back whole"
    );
    assert!(reader.read_new().await.unwrap().is_empty());
    // A record far bigger than a line usually is comes back whole (nothing torn).
    let big = "x".repeat(100_000);
    a.append(&note(&big)).await.unwrap();
    let rest = reader.read_new().await.unwrap();
    assert_eq!(rest.len(), 1, "a read from a cursor returns only what came after it");
    assert_eq!(message(&rest[0].event), big);
    assert_eq!(reader.seq(), 3);
    // The other handle appends after the first one's; its cache never hides a record.
    b.append(&Event::StepDone { step: 0, elapsed_ms: 0 }).await.unwrap();
    a.append(&Event::StepStarted { step: 1 }).await.unwrap();
    let events: Vec<Event> = reader.read_new().await.unwrap().into_iter().map(|r| r.event).collect();
    assert_eq!(
        events,
        vec![
            Event::StepDone { step: 0, elapsed_ms: 0 },
            Event::StepStarted { step: 1 }
        ]
    );
    assert_eq!(b.read_all().await.unwrap().len(), 5);

    assert_eq!(a.saved_plan().await.unwrap().as_deref(), Some(plan));
    assert_eq!(store.saved_plan("20000101T000000Z-00000000").await.unwrap(), None);

    assert_eq!(store.latest(TARGET).await.unwrap(), None);
    store.set_latest(TARGET, &id).await.unwrap();
    assert_eq!(other.latest(TARGET).await.unwrap().as_deref(), Some(id.as_str()));
    let newer = other.create("plan 2").await.unwrap();
    other.set_latest(TARGET, &newer).await.unwrap();
    assert_eq!(store.latest(TARGET).await.unwrap().as_deref(), Some(newer.as_str()));

    let mut created = vec![id.clone(), newer];
    for i in 0..3 {
        created.push(store.create(&format!("plan {i}")).await.unwrap());
    }
    let ids = other.ids().await.unwrap();
    let mut sorted = created.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "every id, oldest first");

    assert!(matches!(
        store.append("nope", &Event::StepStarted { step: 0 }, None).await,
        Err(JournalError::NotFound(_))
    ));
    assert!(matches!(
        other.read("nope", Cursor::default()).await,
        Err(JournalError::NotFound(_))
    ));
}

/// Journal records are what a local journal line holds, one item each, numbered from 1.
#[tokio::test]
async fn a_record_item_holds_the_journal_line_under_its_sequence_number() {
    let (_moto, conf, store) = table().await;
    let id = store.create("plan").await.unwrap();
    let record = store.append(&id, &Event::StepStarted { step: 0 }, None).await.unwrap();
    let raw = aws_sdk_dynamodb::Client::new(&conf)
        .get_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S(format!("cutover#{id}")))
        .key("sk", AttributeValue::S("rec#000000000001".into()))
        .send()
        .await
        .unwrap();
    let item = raw.item().expect("record 1");
    assert_eq!(item["record"].as_s().unwrap(), &serde_json::to_string(&record).unwrap());
}

/// Many tasks of two writers (two handles, as two processes) append to one journal at once:
/// every record lands once, the journal is one order, and each task's records keep its order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_land_once_each_in_one_order() {
    const WRITERS: usize = 2;
    const TASKS: usize = 4;
    const EACH: usize = 12;
    let (moto, conf, first) = table().await;
    let id = first.create("plan").await.unwrap();
    // The second writer goes through a proxy that only counts: the races must have happened.
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let second = DynamoStore::new(&sdk(proxy.endpoint()).await, TABLE);
    let writers = [Arc::new(first), Arc::new(second)];
    let mut tasks = Vec::new();
    for (w, store) in writers.iter().enumerate() {
        for t in 0..TASKS {
            let (store, id) = (store.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..EACH {
                    store.append(&id, &note(&format!("{w} {t} {i}")), None).await.unwrap();
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let reader = DynamoStore::new(&conf, TABLE);
    let (records, cursor) = reader.read(&id, Cursor::default()).await.unwrap();
    assert_eq!(records.len(), WRITERS * TASKS * EACH);
    assert_eq!(cursor.seq as usize, records.len());
    let messages: Vec<&str> = records.iter().map(|r| message(&r.event)).collect();
    let unique: HashSet<&str> = messages.iter().copied().collect();
    assert_eq!(unique.len(), messages.len(), "no record twice");
    let mut last: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for m in &messages {
        let n: Vec<usize> = m.split(' ').map(|x| x.parse().unwrap()).collect();
        if let Some(prev) = last.insert((n[0], n[1]), n[2]) {
            assert!(
                prev < n[2],
                "task {}/{} out of order: {prev} before {}",
                n[0],
                n[1],
                n[2]
            );
        }
    }
    assert_eq!(last.len(), WRITERS * TASKS);
    let puts = proxy.snapshot().op("PutItem").requests as usize;
    assert!(
        puts > TASKS * EACH,
        "no race was lost ({puts} PutItem for {} records)",
        TASKS * EACH
    );
    // The items themselves: numbers 1..=N, no gap and nothing else in the partition.
    let out = aws_sdk_dynamodb::Client::new(&conf)
        .query()
        .table_name(TABLE)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("cutover#{id}")))
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = out.items().iter().map(|i| i["sk"].as_s().unwrap().clone()).collect();
    let mut want: Vec<String> = (1..=records.len()).map(|n| format!("rec#{n:012}")).collect();
    want.insert(0, "plan".into());
    assert_eq!(keys, want);
}

/// One holder at a time; a dropped lease is released, so another process takes it at once, with
/// a higher token, and the old token's fenced appends are refused while an operator's pass.
#[tokio::test]
async fn a_lease_is_exclusive_and_free_at_once_when_dropped_with_a_higher_token() {
    let (_moto, conf, a) = table().await;
    let b = DynamoStore::new(&conf, TABLE);
    let id = a.create("plan").await.unwrap();
    assert_eq!(a.lease(TARGET).await.unwrap(), None);
    let first = a.try_lock(TARGET, "serve a").await.unwrap().expect("free");
    assert!(first.is_held());
    assert!(b.try_lock(TARGET, "serve b").await.unwrap().is_none(), "exclusive");
    let info = b.lease(TARGET).await.unwrap().expect("a lease item");
    assert_eq!(
        (info.owner.as_str(), info.token, info.held),
        ("serve a", first.fence().token, true)
    );
    let expires = wall(info.expires_at.as_deref().expect("an expiry"));
    let ttl = expires.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(
        ttl > LEASE_TTL - Duration::from_secs(2) && ttl <= LEASE_TTL,
        "expires in {ttl:?}"
    );
    a.append(&id, &Event::StepStarted { step: 0 }, Some(first.fence()))
        .await
        .expect("the holder's fenced append");

    let stale = first.fence().clone();
    drop(first);
    let dropped = Instant::now();
    let second = loop {
        if let Some(lease) = b.try_lock(TARGET, "serve b").await.unwrap() {
            break lease;
        }
        assert!(
            dropped.elapsed() < Duration::from_secs(3),
            "the dropped lease was not released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(second.fence().token, stale.token + 1);
    let info = a.lease(TARGET).await.unwrap().unwrap();
    assert_eq!((info.owner.as_str(), info.held), ("serve b", true));

    let refused = a
        .append(&id, &Event::StepDone { step: 0, elapsed_ms: 0 }, Some(&stale))
        .await;
    assert!(
        matches!(refused, Err(JournalError::Fenced { token, .. }) if token == stale.token),
        "{refused:?}"
    );
    b.append(&id, &Event::StepDone { step: 0, elapsed_ms: 0 }, Some(second.fence()))
        .await
        .unwrap();
    a.append(&id, &Event::StepStarted { step: 1 }, None).await.unwrap();
    let events: Vec<Event> = a
        .read(&id, Cursor::default())
        .await
        .unwrap()
        .0
        .into_iter()
        .map(|r| r.event)
        .collect();
    assert_eq!(
        events,
        vec![
            Event::StepStarted { step: 0 },
            Event::StepDone { step: 0, elapsed_ms: 0 },
            Event::StepStarted { step: 1 }
        ],
        "the refused append left nothing"
    );
    // A fence for a target nobody ever leased is refused too.
    let never = journal::Fence {
        target: "arn:never".into(),
        token: 1,
    };
    assert!(matches!(
        a.append(&id, &Event::StepStarted { step: 2 }, Some(&never)).await,
        Err(JournalError::Fenced { .. })
    ));
}

/// The lease rules in real time: renewals keep a lease past `LEASE_TTL`; a holder whose
/// renewals no longer reach the table (its `UpdateItem`s fail, through the fault proxy) stops
/// acting `LEASE_MARGIN` before the table's expiry; nobody takes the lease before that expiry,
/// someone does after it, with a higher token; then the stale holder's fenced append is refused
/// and its unfenced (operator) append goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_cut_off_from_the_table_stops_acting_before_its_lease_runs_out() {
    let (moto, _conf, other) = table().await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let holder = DynamoStore::new(&sdk(proxy.endpoint()).await, TABLE);
    let id = other.create("plan").await.unwrap();

    let first = holder.try_lock(TARGET, "serve a").await.unwrap().expect("free");
    tokio::time::sleep(LEASE_TTL + Duration::from_secs(2)).await;
    assert!(first.is_held(), "renewed past LEASE_TTL");
    assert!(other.try_lock(TARGET, "serve b").await.unwrap().is_none());
    holder
        .append(&id, &Event::StepStarted { step: 0 }, Some(first.fence()))
        .await
        .unwrap();

    proxy.set(Faults::none().server_error(500, Rule::always().only(["UpdateItem"])));
    let cut = Instant::now();
    while first.is_held() {
        assert!(
            cut.elapsed() < LEASE_TTL,
            "still acting {:?} after the cut",
            cut.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stopped = SystemTime::now();
    let info = other.lease(TARGET).await.unwrap().unwrap();
    assert!(info.held, "the holder stopped before its lease ran out");
    let expires = wall(info.expires_at.as_deref().unwrap());
    let ahead = expires.duration_since(stopped).unwrap_or_default();
    assert!(
        ahead + Duration::from_millis(500) >= LEASE_MARGIN,
        "stopped only {ahead:?} before the lease ran out"
    );
    assert!(
        cut.elapsed() <= LEASE_TTL - LEASE_MARGIN + LEASE_RENEW,
        "stopped {:?} after the cut",
        cut.elapsed()
    );

    let second = loop {
        if let Some(lease) = other.try_lock(TARGET, "serve b").await.unwrap() {
            break lease;
        }
        assert!(cut.elapsed() < LEASE_TTL * 2, "the lease never ran out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let taken = SystemTime::now();
    assert!(
        taken >= expires,
        "taken {:?} before it ran out",
        expires.duration_since(taken)
    );
    assert_eq!(second.fence().token, first.fence().token + 1);
    assert_eq!(other.lease(TARGET).await.unwrap().unwrap().owner, "serve b");

    let stale = holder
        .append(&id, &Event::StepDone { step: 0, elapsed_ms: 0 }, Some(first.fence()))
        .await;
    assert!(matches!(stale, Err(JournalError::Fenced { .. })), "{stale:?}");
    holder
        .append(&id, &Event::StepStarted { step: 1 }, None)
        .await
        .expect("an operator's append needs no lease");
    other
        .append(&id, &Event::StepDone { step: 1, elapsed_ms: 0 }, Some(second.fence()))
        .await
        .unwrap();
    assert_eq!(other.read(&id, Cursor::default()).await.unwrap().0.len(), 3);
    // Dropping the stale holder does not release the new one's lease.
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(other.lease(TARGET).await.unwrap().unwrap().held);
}

/// A failing table is a one-line store error naming the operation, the table and the service's
/// code, never the SDK's debug dump.
#[tokio::test]
async fn a_throttled_table_is_a_one_line_store_error() {
    let (moto, _conf, store) = table().await;
    let id = store.create("plan").await.unwrap();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let through = DynamoStore::new(&sdk(proxy.endpoint()).await, TABLE);
    proxy.set(Faults::none().throttle(Rule::always().only(["Query"])));
    let e = through.read(&id, Cursor::default()).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, JournalError::Store(_)), "{e:?}");
    assert!(
        text.contains("Query") && text.contains(TABLE) && text.contains("ThrottlingException"),
        "{text}"
    );
    assert!(!text.contains('\n') && !text.contains("ServiceError"), "{text}");
    assert!(proxy.snapshot().op("Query").requests > 1, "the SDK retried first");
}

/// `store init` creates the table once; a second call finds it; a table with another key is
/// refused; a store on a missing table says how to create it; `open` takes only dynamodb://.
#[tokio::test]
async fn init_creates_the_table_once_and_is_idempotent() {
    let moto = Moto::start();
    let conf = sdk(&moto.endpoint).await;
    let ddb = aws_sdk_dynamodb::Client::new(&conf);

    let missing = journal::open(&format!("dynamodb://{TABLE}"), &conf).await.unwrap();
    assert_eq!(missing.describe(), format!("DynamoDB table {TABLE}"));
    let e = missing.ids().await.unwrap_err().to_string();
    assert!(
        e.contains("not found") && e.contains("cutover store init --store dynamodb://cutover-state"),
        "{e}"
    );
    let e = journal::open("s3://bucket/cutover", &conf)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("s3://bucket/cutover") && e.contains("dynamodb://TABLE"),
        "{e}"
    );

    dynamo::init(&conf, TABLE).await.unwrap();
    let described = ddb.describe_table().table_name(TABLE).send().await.unwrap();
    let t = described.table().unwrap();
    let key: Vec<(&str, &KeyType)> = t
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type()))
        .collect();
    assert_eq!(key, [("pk", &KeyType::Hash), ("sk", &KeyType::Range)]);
    assert_eq!(
        t.billing_mode_summary().and_then(|b| b.billing_mode()),
        Some(&BillingMode::PayPerRequest)
    );
    assert_eq!(t.deletion_protection_enabled(), Some(true));
    let created = t.creation_date_time().copied();

    let id = missing
        .create("plan")
        .await
        .expect("the store works once the table exists");
    dynamo::init(&conf, TABLE).await.expect("a second init finds the table");
    let again = ddb.describe_table().table_name(TABLE).send().await.unwrap();
    assert_eq!(
        again.table().unwrap().creation_date_time().copied(),
        created,
        "not created twice"
    );
    assert_eq!(missing.ids().await.unwrap(), vec![id], "nothing lost");

    let attribute = AttributeDefinition::builder()
        .attribute_name("id")
        .attribute_type(ScalarAttributeType::S)
        .build()
        .unwrap();
    let key = KeySchemaElement::builder()
        .attribute_name("id")
        .key_type(KeyType::Hash)
        .build()
        .unwrap();
    ddb.create_table()
        .table_name("someone-elses")
        .attribute_definitions(attribute)
        .key_schema(key)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let e = dynamo::init(&conf, "someone-elses").await.unwrap_err().to_string();
    assert!(
        e.contains("someone-elses") && e.contains("pk (S, HASH) + sk (S, RANGE)"),
        "{e}"
    );
}

/// Regression (issue 9): under load, two runners both took the same lease, because moto's
/// threaded server applies a conditional write without a lock (two winners in 35 of 100
/// eight-way races). DynamoDB's are atomic, so the tests' moto serializes requests
/// (`deploy/local/moto_server.py`). Eight stores race for each of 20 targets: one wins each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_takers_of_a_lease_have_exactly_one_winner() {
    let (_moto, conf, _store) = table().await;
    for trial in 0..20 {
        let target = format!("{TARGET}-race-{trial}");
        let racers = (0..8).map(|i| {
            let store = DynamoStore::new(&conf, TABLE);
            let target = target.clone();
            tokio::spawn(async move { store.try_lock(&target, &format!("racer {i}")).await.expect("try_lock") })
        });
        let leases: Vec<_> = futures_util::future::join_all(racers)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        let winners = leases.iter().filter(|l| l.is_some()).count();
        assert_eq!(
            winners, 1,
            "trial {trial}: {winners} racers took the lease of one target"
        );
    }
}
