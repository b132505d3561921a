//! Exactly once out, against a real Kafka-protocol broker and a real
//! directory: a change log with redeliveries is exported with the exporter
//! stopped dead in the middle of a flush — after its pending checkpoint and
//! some of its files, before the rest — then started again. Every file the
//! dead exporter wrote is rewritten under the same name with the same bytes,
//! no two files of a partition cover the same offsets, and the dataset holds
//! every change exactly once (redeliveries dropped), as a clean run's does —
//! even though the restarted exporter closes batches at another size.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use cellbank_exporter::checkpoint::Checkpoint;
use cellbank_exporter::export::run_with_store;
use cellbank_exporter::Settings;
use cellbank_shared::kafka::{client_config, Topic};
use cellbank_shared::testkit::Broker;

/// A local directory that stops answering (a process frozen, then killed)
/// once a flush's pending checkpoint and `files` of its files were put.
#[derive(Debug)]
struct Freezing {
    inner: LocalFileSystem,
    files_before_freeze: usize,
    pending_seen: AtomicBool,
    files: AtomicUsize,
    frozen: AtomicBool,
}

impl fmt::Display for Freezing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Freezing({})", self.inner)
    }
}

impl Freezing {
    /// Whether this put is one the frozen process never made.
    fn freezes(&self, location: &Path, payload: &PutPayload) -> bool {
        if self.frozen.load(Ordering::SeqCst) {
            return true;
        }
        let name = location.as_ref();
        if name.starts_with("_checkpoints/") {
            let body: Vec<u8> = payload.iter().flat_map(|b| b.to_vec()).collect();
            let c: Checkpoint = serde_json::from_slice(&body).unwrap();
            // Freeze only once a flush has some files out and some not.
            if !c.pending.is_empty() {
                self.pending_seen.store(true, Ordering::SeqCst);
            }
            return false;
        }
        if self.pending_seen.load(Ordering::SeqCst)
            && name.ends_with(".parquet")
            && !name.starts_with("_schemas/")
        {
            let n = self.files.fetch_add(1, Ordering::SeqCst);
            if n >= self.files_before_freeze {
                self.frozen.store(true, Ordering::SeqCst);
                return true;
            }
        }
        false
    }
}

#[async_trait]
impl ObjectStore for Freezing {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if self.freezes(location, &payload) {
            futures::future::pending::<()>().await;
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn settings(bootstrap: &str, batch_rows: usize) -> Settings {
    let mut s = Settings::default();
    s.shard.id = Some(cellbank_shared::ids::ShardId::parse("shard-7").unwrap());
    s.kafka.bootstrap = bootstrap.to_owned();
    s.kafka.fetch_wait_ms = 20;
    s.server.port = 0;
    s.export.batch_rows = batch_rows;
    s.export.batch_ms = 1_000;
    s.export.dedupe_window = 10_000;
    s
}

/// A change of a random entity, as the cell's relay writes it.
fn change(rng: &mut StdRng, seq: i64, customers: &[uuid::Uuid]) -> (String, Vec<u8>) {
    let customer = customers[rng.gen_range(0..customers.len())];
    let day = rng.gen_range(1..=28);
    let (entity, row) = match rng.gen_range(0..4) {
        0 | 1 => (
            "postings",
            serde_json::json!({
            "id": seq, "namespace": "cell", "event_id": format!("e{seq}"), "entry_no": 1,
            "account_code": "checking", "currency": "BRL",
            "amount": if seq % 2 == 0 { 500 } else { -500 },
            "business_time": format!("2026-11-{day:02}T12:00:00+00:00")}),
        ),
        2 => (
            "cards",
            serde_json::json!({
            "card_id": uuid::Uuid::new_v4(), "last4": "4242", "currency": "BRL",
            "credit_limit": rng.gen_range(1..10_000), "blocked": rng.gen_bool(0.1),
            "closing_day": 1, "due_day": 10, "created_at": "2026-12-01T00:00:00+00:00",
            "limit_set_at": "2026-12-01T00:00:00+00:00"}),
        ),
        _ => (
            "transfers",
            serde_json::json!({
            "transfer_id": uuid::Uuid::new_v4(), "from_account": uuid::Uuid::new_v4(),
            "to_account_number": "0001-2", "amount": 10, "currency": "BRL", "state": "pending",
            "created_at": "2026-12-01T00:00:00+00:00"}),
        ),
    };
    let body = serde_json::json!({
        "seq": seq, "entity": entity, "op": "insert", "customer_id": customer, "epoch": 1,
        "changed_at": format!("2026-12-{day:02}T08:00:00.123456+00:00"), "row": row,
    });
    (customer.to_string(), serde_json::to_vec(&body).unwrap())
}

/// Produces `n` changes and about a tenth again (redeliveries, a while
/// later), in bursts as the cell's relay does (so the broker stores record
/// batches of many records, and a restart can land inside one).
async fn fill_log(bootstrap: &str, n: i64) -> usize {
    let producer: FutureProducer = client_config(bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let customers: Vec<uuid::Uuid> = (0..20).map(|_| uuid::Uuid::new_v4()).collect();
    let mut sent: Vec<(String, Vec<u8>)> = Vec::new();
    let mut burst: Vec<(String, Vec<u8>)> = Vec::new();
    let mut produced = 0;
    for seq in 1..=n {
        let rec = change(&mut rng, seq, &customers);
        sent.push(rec.clone());
        burst.push(rec);
        if rng.gen_bool(0.1) {
            let back = rng.gen_range(sent.len().saturating_sub(50)..sent.len());
            burst.push(sent[back].clone());
        }
        if burst.len() >= 40 || seq == n {
            let sends = burst.iter().map(|(k, v)| {
                producer.send(
                    FutureRecord::to(Topic::CellChanges.name())
                        .key(k)
                        .payload(v),
                    Duration::from_secs(5),
                )
            });
            for r in futures::future::join_all(sends).await {
                r.map_err(|(e, _)| e).unwrap();
            }
            produced += burst.len();
            burst.clear();
        }
    }
    produced
}

/// Runs the exporter into `store` until its checkpoint is `offsets` ahead in
/// total, or until it froze (then its task is dropped: nothing more is written).
async fn export_until(
    bootstrap: &str,
    store: Arc<dyn ObjectStore>,
    dir: &FsPath,
    total: i64,
    batch_rows: usize,
    frozen: Option<Arc<Freezing>>,
) {
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_with_store(
        settings(bootstrap, batch_rows),
        store,
        Path::default(),
        Arc::new(AtomicBool::new(false)),
        stop.clone(),
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(f) = &frozen {
            if f.frozen.load(Ordering::SeqCst) {
                task.abort();
                let _ = task.await;
                return;
            }
        }
        let done = std::fs::read(dir.join("_checkpoints/shard-7.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Checkpoint>(&b).ok())
            .is_some_and(|c| {
                c.pending.is_empty() && c.partitions.values().map(|p| p.next).sum::<i64>() == total
            });
        if done {
            stop.cancel();
            task.await.unwrap().unwrap();
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the export did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Change ids per entity in the dataset's Parquet files (all of them, repeats included).
fn change_ids(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<i64>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (name, bytes) in files {
        if name.starts_with('_') || !name.ends_with(".parquet") {
            continue;
        }
        let entity = name.split('/').next().unwrap().to_owned();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(bytes.clone()),
        )
        .unwrap()
        .build()
        .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let ids = batch
                .column_by_name("change_id")
                .unwrap()
                .as_primitive::<Int64Type>();
            out.entry(entity.clone())
                .or_default()
                .extend(ids.values().iter());
        }
    }
    for ids in out.values_mut() {
        ids.sort_unstable();
    }
    out
}

/// (partition, start, end) of every data file, from its name.
fn ranges(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<(i64, i64)>> {
    let mut out: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for name in files.keys().filter(|n| !n.starts_with('_')) {
        let stem = name
            .rsplit('/')
            .next()
            .unwrap()
            .trim_end_matches(".parquet");
        let parts: Vec<&str> = stem.rsplitn(4, '-').collect();
        out.entry(parts[2].to_owned())
            .or_default()
            .push((parts[1].parse().unwrap(), parts[0].parse().unwrap()));
    }
    for rs in out.values_mut() {
        rs.sort_unstable();
        rs.dedup();
    }
    out
}

/// Every file under `dir` but the checkpoint, with its bytes.
fn dataset(dir: &FsPath) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                if !rel.starts_with("_checkpoints") {
                    out.insert(rel, std::fs::read(&p).unwrap());
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_cut_short_is_redone_into_the_same_objects() {
    let broker = Broker::start().await;
    let bootstrap = broker.bootstrap();
    broker.create_topics(&[Topic::CellChanges.name()], 3).await;
    let changes = 1_500;
    let records = fill_log(&bootstrap, changes).await as i64;
    assert!(records > changes, "no redeliveries in the log");

    let reference = tempfile::tempdir().unwrap();
    let local = Arc::new(LocalFileSystem::new_with_prefix(reference.path()).unwrap());
    export_until(&bootstrap, local, reference.path(), records, 97, None).await;
    let clean = change_ids(&dataset(reference.path()));
    let all: Vec<i64> = clean.values().flatten().copied().collect();
    assert_eq!(
        all.len() as i64,
        changes,
        "the clean run exported each change once"
    );

    for files_before_freeze in [0, 3] {
        let crashed = tempfile::tempdir().unwrap();
        let freezing = Arc::new(Freezing {
            inner: LocalFileSystem::new_with_prefix(crashed.path()).unwrap(),
            files_before_freeze,
            pending_seen: AtomicBool::new(false),
            files: AtomicUsize::new(0),
            frozen: AtomicBool::new(false),
        });
        export_until(
            &bootstrap,
            freezing.clone(),
            crashed.path(),
            records,
            97,
            Some(freezing.clone()),
        )
        .await;
        assert!(
            freezing.frozen.load(Ordering::SeqCst),
            "the exporter never froze mid-flush"
        );
        let ckpt: Checkpoint = serde_json::from_slice(
            &std::fs::read(crashed.path().join("_checkpoints/shard-7.json")).unwrap(),
        )
        .unwrap();
        assert!(!ckpt.pending.is_empty(), "frozen with no flush pending");
        let before = dataset(crashed.path());

        // Restarted with other batch settings (an operator's change, or
        // just another interleaving of partitions): the redo still closes
        // exactly where the dead exporter's flush did.
        let local = Arc::new(LocalFileSystem::new_with_prefix(crashed.path()).unwrap());
        export_until(&bootstrap, local, crashed.path(), records, 61, None).await;
        let after = dataset(crashed.path());
        for (name, bytes) in &before {
            assert!(
                after.get(name) == Some(bytes),
                "{name} was not rewritten as it was"
            );
        }
        for (partition, rs) in ranges(&after) {
            for w in rs.windows(2) {
                assert!(
                    w[0].1 < w[1].0,
                    "{partition}: files {:?} and {:?} overlap",
                    w[0],
                    w[1]
                );
            }
        }
        assert_eq!(
            change_ids(&after),
            clean,
            "the redo exported other changes than a clean run"
        );
    }
}

/// A checkpoint far past the log's end (the broker was reset, or it is
/// another cell's broker) stops the exporter with why, instead of skipping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_behind_the_checkpoint_is_refused() {
    let broker = Broker::start().await;
    let bootstrap = broker.bootstrap();
    broker.create_topics(&[Topic::CellChanges.name()], 1).await;
    fill_log(&bootstrap, 10).await;
    let dir = tempfile::tempdir().unwrap();
    let local = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let mut ckpt = Checkpoint {
        shard: "shard-7".into(),
        topic: Topic::CellChanges.name().into(),
        ..Checkpoint::default()
    };
    ckpt.partitions.insert(
        0,
        cellbank_exporter::checkpoint::PartitionProgress { next: 50_000 },
    );
    ckpt.save(local.as_ref(), &Path::default()).await.unwrap();
    let err = run_with_store(
        settings(&bootstrap, 100),
        local,
        Path::default(),
        Arc::new(AtomicBool::new(false)),
        CancellationToken::new(),
    )
    .await
    .expect_err("a log behind the checkpoint must stop the export");
    assert!(
        format!("{err:#}").contains("ends before the export's checkpoint"),
        "{err:#}"
    );
}
