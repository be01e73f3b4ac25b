//! The ingest pipeline against real storage: good rows land, bad ones land in `rejected`
//! with a reason, valid items of a partly bad payload are kept.

use wattdb_ingest::pipeline::{IngestConfig, Ingestor};
use wattdb_ingest::route::{Route, RouteConfig};
use wattdb_storage::{Storage, StorageConfig};

fn rows_of(storage: &Storage, table: &str) -> usize {
    let snap = storage.snapshot(table).unwrap();
    snap.buffered.iter().map(|b| b.rows).sum::<usize>()
        + snap.files.iter().map(|f| f.rows as usize).sum::<usize>()
}

fn text_column(storage: &Storage, table: &str, column: &str) -> Vec<String> {
    use arrow::array::{Array, AsArray};
    let snap = storage.snapshot(table).unwrap();
    let mut out = Vec::new();
    for p in &snap.buffered {
        for b in &p.batches {
            let col = b.column_by_name(column).unwrap().as_string::<i32>();
            out.extend((0..col.len()).map(|i| col.value(i).to_string()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_rows_land_and_bad_ones_are_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(StorageConfig::new(dir.path())).await.unwrap();
    let config = IngestConfig {
        routes: vec![
            Route::from_config(RouteConfig {
                preset: Some("tasmota".into()),
                ..Default::default()
            })
            .unwrap(),
        ],
        max_payload_bytes: 2048,
        ..Default::default()
    };
    let ing = Ingestor::new(storage.clone(), config).await.unwrap();

    // Canonical array: 2 good items, 1 without ts.
    let out = ing
        .ingest(
            "wattdb/electric",
            br#"[{"ts":1793491200000,"tags":{"pid":"p1"},"fields":{"ua":221.5}},
                 {"ts":"2026-11-01T00:01:00Z","tags":{"pid":"p1"},"fields":{"ua":222}},
                 {"tags":{"pid":"p2"},"fields":{"ua":1}}]"#,
        )
        .await
        .unwrap();
    assert_eq!((out.rows_written, out.rows_rejected), (2, 1));
    assert_eq!(rows_of(&storage, "electric"), 2);

    // Type conflict: ua is a float column, a string does not fit; the other item lands.
    let out = ing
        .ingest(
            "wattdb/electric",
            br#"[{"ts":1793491320000,"tags":{"pid":"p1"},"fields":{"ua":"high"}},
                 {"ts":1793491380000,"tags":{"pid":"p1"},"fields":{"ua":223.0}}]"#,
        )
        .await
        .unwrap();
    assert_eq!((out.rows_written, out.rows_rejected), (1, 1));

    // Line protocol, one good and one broken line.
    let out = ing
        .ingest(
            "wattdb/line",
            b"electric,pid=p3 ua=230.1 1793491200000000000\nelectric,pid=p3 ua=",
        )
        .await
        .unwrap();
    assert_eq!((out.rows_written, out.rows_rejected), (1, 1));
    assert_eq!(rows_of(&storage, "electric"), 4);

    // Route preset.
    let out = ing
        .ingest(
            "tele/plug1/SENSOR",
            br#"{"Time":"2018-02-15T17:37:10","ENERGY":{"Power":2635,"Voltage":227}}"#,
        )
        .await
        .unwrap();
    assert_eq!(out.rows_written, 1);
    assert_eq!(rows_of(&storage, "tasmota"), 1);

    // Whole-message rejections: bad JSON, oversize, no route, bad table name.
    for (topic, payload) in [
        ("wattdb/electric", b"{not json".to_vec()),
        ("wattdb/electric", vec![b' '; 4096]),
        ("some/other/topic", b"1".to_vec()),
        ("wattdb/bad name", br#"{"ts":1,"fields":{"v":1}}"#.to_vec()),
        ("wattdb/rejected", br#"{"ts":1,"fields":{"v":1}}"#.to_vec()),
    ] {
        let out = ing.ingest(topic, &payload).await.unwrap();
        assert_eq!((out.rows_written, out.rows_rejected), (0, 1), "{topic}");
    }

    // 1 + 1 + 1 item rejections + 5 whole-message rejections.
    assert_eq!(rows_of(&storage, "rejected"), 8);
    let errors = text_column(&storage, "rejected", "error");
    assert!(
        errors.iter().any(|e| e.contains("missing ts")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("does not fit column type")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("over the 2048 byte limit")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("no route for topic")),
        "{errors:?}"
    );
    let payloads = text_column(&storage, "rejected", "payload");
    assert!(
        payloads.iter().all(|p| p.len() <= 4096 + 20),
        "payloads are truncated"
    );
    storage.shutdown().await.unwrap();
}
