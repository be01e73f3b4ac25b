//! The object-store failpoints (`persist-upload`, `manifest-write`, `object-put`,
//! `object-delete`) each fail only their own kind of write, and a failed write or delete
//! changes nothing in the store; a merge whose upload fails is an error, not a panic. Needs `--features wattdb-storage/failpoints`.
#![cfg(feature = "failpoints")]

use std::sync::Arc;

use datafusion::prelude::SessionContext;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use wattdb_storage::batch::{rows_to_batch, sort_dedup};
use wattdb_storage::catalog::FileMeta;
use wattdb_storage::catalog::manifest::MANIFEST_PATH;
use wattdb_storage::faulty_store::wrap;
use wattdb_storage::model::schema::FieldDef;
use wattdb_storage::model::{FieldType, FieldValue, Month, TableDef, TableId, ValidRow};
use wattdb_storage::persist::{encode_parquet, merge_files};
use wattdb_storage::wal::WalSeq;

async fn exists(store: &Arc<dyn ObjectStore>, p: &Path) -> bool {
    store.head(p).await.is_ok()
}

#[tokio::test]
async fn each_failpoint_fails_only_its_own_kind_of_write() {
    let _scenario = fail::FailScenario::setup();
    let store = wrap(Arc::new(InMemory::new()));
    let parquet = Path::from("m/month=2026-11/a.parquet");
    let manifest = Path::from(MANIFEST_PATH);
    let other = Path::from("m/month=2026-11/_partition.json");

    fail::cfg("persist-upload", "return").unwrap();
    assert!(store.put(&parquet, "x".into()).await.is_err());
    assert!(
        !exists(&store, &parquet).await,
        "a failed upload leaves nothing"
    );
    assert!(store.put_multipart(&parquet).await.is_err());
    store.put(&manifest, "x".into()).await.unwrap();
    store.put(&other, "x".into()).await.unwrap();
    fail::remove("persist-upload");

    fail::cfg("manifest-write", "return").unwrap();
    store.put(&parquet, "x".into()).await.unwrap();
    assert!(store.put(&manifest, "y".into()).await.is_err());
    let kept = store.get(&manifest).await.unwrap().bytes().await.unwrap();
    assert_eq!(&kept[..], b"x", "a failed manifest write keeps the old one");
    fail::remove("manifest-write");

    fail::cfg("object-put", "return").unwrap();
    assert!(store.put(&other, "y".into()).await.is_err());
    store.put(&parquet, "x".into()).await.unwrap();
    fail::remove("object-put");

    fail::cfg("object-delete", "return").unwrap();
    assert!(store.delete(&parquet).await.is_err());
    assert!(
        exists(&store, &parquet).await,
        "a failed delete deletes nothing"
    );
    fail::remove("object-delete");
    store.delete(&parquet).await.unwrap();
    assert!(!exists(&store, &parquet).await);
}

#[tokio::test]
async fn a_multipart_upload_can_fail_at_its_last_step() {
    let _scenario = fail::FailScenario::setup();
    let store = wrap(Arc::new(InMemory::new()));
    let parquet = Path::from("m/month=2026-11/big.parquet");
    let mut upload = store.put_multipart(&parquet).await.unwrap();
    upload.put_part(vec![1u8; 1024].into()).await.unwrap();
    fail::cfg("persist-upload", "return").unwrap();
    assert!(upload.complete().await.is_err());
    fail::remove("persist-upload");
    assert!(!exists(&store, &parquet).await, "the object never appears");
}

/// One small input file for a merge, written before any failpoint is set.
async fn merge_input(store: &Arc<dyn ObjectStore>) -> (TableDef, FileMeta) {
    let def = TableDef::new(
        TableId(3),
        "m",
        vec!["pid".into()],
        vec![FieldDef {
            name: "v".into(),
            field_type: FieldType::Float,
        }],
    )
    .unwrap();
    let rows: Vec<ValidRow> = (0..100)
        .map(|i| ValidRow {
            ts: i * 60_000_000,
            tags: vec![format!("p{}", i % 3)],
            fields: vec![Some(FieldValue::Float(i as f64))],
        })
        .collect();
    let batch = sort_dedup(&rows_to_batch(&def, rows.iter()).unwrap(), def.key_len()).unwrap();
    let path = "m/month=1970-01/in.parquet".to_string();
    let data = encode_parquet(&def, &batch, &path).unwrap();
    let bytes = data.len() as u64;
    store
        .put(&Path::from(path.as_str()), data.into())
        .await
        .unwrap();
    let meta = FileMeta {
        table_id: def.id,
        month: Month::of_micros(0),
        path,
        min_ts: 0,
        max_ts: 99 * 60_000_000,
        rows: batch.num_rows() as u64,
        bytes,
        max_seq: WalSeq(1),
        created_at_ms: 0,
        deletes_applied: WalSeq(0),
        fulltext: Vec::new(),
    };
    (def, meta)
}

/// A merge (compaction) whose upload fails at its last step returns the error and
/// leaves nothing behind. It used to abort the upload after the writer's shutdown had
/// begun, which panics inside object_store's BufWriter ("Already shut down") — found by
/// tests/storage_faults.rs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_whose_upload_fails_at_the_end_is_an_error_not_a_panic() {
    let _scenario = fail::FailScenario::setup();
    let store = wrap(Arc::new(InMemory::new()));
    let (def, input) = merge_input(&store).await;
    let session = SessionContext::new();
    session.runtime_env().register_object_store(
        &url::Url::parse(wattdb_storage::read::STORE_URL).unwrap(),
        store.clone(),
    );
    let out = "m/month=1970-01/merged.parquet";
    fail::cfg("persist-upload", "return").unwrap();
    let merged = merge_files(
        &session,
        &store,
        &def,
        &[input],
        &[],
        out,
        &std::env::temp_dir(),
    )
    .await;
    fail::remove("persist-upload");
    assert!(merged.is_err(), "the failed upload is reported");
    assert!(!exists(&store, &Path::from(out)).await);
    // And with the fault gone the same merge goes through.
    let (def, input) = merge_input(&store).await;
    let merged = merge_files(
        &session,
        &store,
        &def,
        &[input],
        &[],
        out,
        &std::env::temp_dir(),
    )
    .await
    .unwrap();
    assert_eq!(merged.rows, 100);
}
