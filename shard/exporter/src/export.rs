//! The export loop: the cell's change log read from the checkpoint's
//! offsets (every partition assigned to this one exporter), batched, and
//! handed to the writer through a bounded queue. When the queue is full the
//! consumer pauses its partitions until the writer catches up, so memory
//! holds at most the open batch, the queued ones and librdkafka's bounded
//! prefetch, however far behind the log the exporter is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cellbank_shared::kafka::{client_config, Topic};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::batch::{Batcher, Flush, Incoming};
use crate::checkpoint::Checkpoint;
use crate::metrics;
use crate::settings::Settings;
use crate::writer::Writer;

/// The dataset's store and the prefix every object goes under.
pub fn open_store(url: &str) -> anyhow::Result<(Arc<dyn ObjectStore>, Path)> {
    let parsed = url::Url::parse(url).context("export.store_url is not a URL")?;
    match parsed.scheme() {
        "file" => {
            let dir = parsed
                .to_file_path()
                .map_err(|()| anyhow::anyhow!("export.store_url: not a local path"))?;
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            let fs = LocalFileSystem::new_with_prefix(&dir).context("open the directory")?;
            Ok((Arc::new(fs), Path::default()))
        }
        "s3" => {
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .build()
                .context("open the S3 bucket")?;
            let prefix = Path::from(parsed.path().trim_matches('/'));
            Ok((Arc::new(s3), prefix))
        }
        other => anyhow::bail!("export.store_url: unsupported scheme {other}"),
    }
}

/// Runs the export until `shutdown`: what was handed to the writer is
/// written before it returns; the open batch is read again next time.
pub async fn run(
    settings: Settings,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (store, prefix) = open_store(&settings.export.store_url)?;
    run_with_store(settings, store, prefix, ready, shutdown).await
}

/// [`run`] into a store already open (`export.store_url` unused).
pub async fn run_with_store(
    settings: Settings,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let shard = settings.shard.id.clone().context("shard.id")?.to_string();
    let exp = settings.export.clone();
    let topic = Topic::CellChanges.name();
    let ckpt = Checkpoint::load(store.as_ref(), &prefix, &shard, topic).await?;
    let consumer = Arc::new(consumer(&settings, &shard)?);
    let back = exp.refetch_records;
    let assignment = assign(&consumer, topic, &ckpt, back, &shutdown).await?;
    ready.store(true, Ordering::Relaxed);
    tracing::info!(
        shard,
        partitions = assignment.count(),
        redo = ckpt.pending.len(),
        "exporting the cell's change log"
    );
    let batcher = Batcher::resume(&ckpt, exp.dedupe_window);
    let writer = Writer {
        store,
        prefix,
        shard,
        parallel_puts: exp.parallel_puts,
        durable: ckpt,
    };
    writer.write_schemas().await?;
    let (tx, rx) = mpsc::channel(exp.max_pending_batches);
    let writing = tokio::spawn(write_all(writer, rx, consumer.clone(), topic));
    let consumed = consume(&consumer, &assignment, batcher, &tx, &settings, &shutdown).await;
    drop(tx);
    writing.await.context("the writer panicked")?;
    consumed
}

fn consumer(settings: &Settings, shard: &str) -> anyhow::Result<StreamConsumer> {
    let mut cfg = client_config(&settings.kafka.bootstrap);
    cfg.set(
        "group.id",
        format!("{}.exporter.{shard}", settings.kafka.group_prefix),
    )
    .set("enable.auto.commit", "false")
    .set("enable.auto.offset.store", "false")
    .set("auto.offset.reset", "earliest")
    .set(
        "queued.max.messages.kbytes",
        settings.export.prefetch_kbytes.to_string(),
    )
    .set(
        "fetch.wait.max.ms",
        settings.kafka.fetch_wait_ms.to_string(),
    );
    cfg.create().context("create the change log consumer")
}

/// Assigns every partition of the log at the checkpoint's offsets (less
/// `back`, skipped by the batcher; the log's start for a partition it has
/// not seen), once the topic exists.
async fn assign(
    consumer: &Arc<StreamConsumer>,
    topic: &'static str,
    ckpt: &Checkpoint,
    back: i64,
    shutdown: &CancellationToken,
) -> anyhow::Result<TopicPartitionList> {
    let partitions = loop {
        let c = consumer.clone();
        let meta = tokio::task::spawn_blocking(move || {
            c.fetch_metadata(Some(topic), Duration::from_secs(5))
                .map(|m| m.topics().first().map_or(0, |t| t.partitions().len()))
        })
        .await?;
        match meta {
            Ok(n) if n > 0 => break n,
            Ok(_) => tracing::info!(topic, "waiting for the cell to create its change log"),
            Err(e) => tracing::warn!(error = %e, "read the change log's metadata failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => anyhow::bail!("stopped before the log was found"),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    log_not_behind(consumer, topic, ckpt, partitions as i32).await?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        let at = ckpt
            .next(p)
            .map_or(Offset::Beginning, |n| Offset::Offset((n - back).max(0)));
        tpl.add_partition_offset(topic, p, at)?;
    }
    consumer.assign(&tpl).context("assign the change log")?;
    Ok(tpl)
}

/// Refuses to go on when the log ends well before the checkpoint: the
/// broker's log was reset or this is another cell's broker, and reading on
/// would skip (or misname) changes. Exporting that cell again starts from its
/// checkpoint's removal.
async fn log_not_behind(
    consumer: &Arc<StreamConsumer>,
    topic: &'static str,
    ckpt: &Checkpoint,
    partitions: i32,
) -> anyhow::Result<()> {
    for p in 0..partitions {
        let Some(next) = ckpt.next(p) else { continue };
        let c = consumer.clone();
        let (_, high) = tokio::task::spawn_blocking(move || {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
        })
        .await?
        .with_context(|| format!("read the end of {topic}/{p}"))?;
        // Coarse on purpose, as the authorizer's own check: tansu's high
        // watermark trails the records it serves (by up to its last batch),
        // so only a checkpoint past the log's end by more than 1,000 records
        // and by more than the whole log counts as a reset or swapped log.
        anyhow::ensure!(
            next - high <= 1_000.max(high),
            "the cell's change log ends before the export's checkpoint ({topic}/{p}: \
             exported up to {next}, the log ends at {high}): the broker's log was reset or \
             this is another broker. Restore the log, or remove this cell's checkpoint and \
             files from the dataset to export the new log from its start"
        );
    }
    Ok(())
}

async fn consume(
    consumer: &StreamConsumer,
    assignment: &TopicPartitionList,
    mut batcher: Batcher,
    tx: &mpsc::Sender<Flush>,
    settings: &Settings,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let exp = &settings.export;
    let mut tick = tokio::time::interval(exp.batch_age().min(Duration::from_millis(100)));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            msg = consumer.recv() => match msg {
                Ok(m) => {
                    let added = batcher.add(Incoming {
                        partition: m.partition(),
                        offset: m.offset(),
                        payload: m.payload().map(<[u8]>::to_vec),
                    });
                    metrics::record(added);
                }
                Err(e) => tracing::warn!(error = %e, "reading the change log failed"),
            },
            _ = tick.tick() => {}
        }
        metrics::BUFFERED_ROWS.set(batcher.rows() as i64);
        if batcher.due(exp.batch_rows, exp.batch_age()) {
            let flush = batcher.close();
            let paused = hand_over(consumer, assignment, tx, flush, shutdown).await?;
            if paused {
                go_on_from(consumer, batcher.positions(), exp.refetch_records).await;
            }
        }
    }
}

/// Queues a closed batch for the writer; with the queue full, pauses the
/// log until there is room (or the exporter stops). Answers whether it
/// paused.
async fn hand_over(
    consumer: &StreamConsumer,
    assignment: &TopicPartitionList,
    tx: &mpsc::Sender<Flush>,
    flush: Flush,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    let flush = match tx.try_send(flush) {
        Ok(()) => return Ok(false),
        Err(mpsc::error::TrySendError::Closed(_)) => anyhow::bail!("the writer stopped"),
        Err(mpsc::error::TrySendError::Full(flush)) => flush,
    };
    metrics::PAUSES.inc();
    consumer.pause(assignment).context("pause the log")?;
    tracing::debug!("the writer is behind: the log is paused");
    tokio::select! {
        () = shutdown.cancelled() => return Ok(true),
        sent = tx.send(flush) => sent.map_err(|_| anyhow::anyhow!("the writer stopped"))?,
    }
    consumer.resume(assignment).context("resume the log")?;
    Ok(true)
}

/// After a pause, every partition goes on from the last record read (less
/// `back`: the batcher skips what it has read): a client that dropped its
/// prefetched records while paused, or a broker that answers a fetch from
/// inside a batch with the next one, must not make it skip any.
async fn go_on_from(
    consumer: &StreamConsumer,
    positions: &std::collections::BTreeMap<i32, i64>,
    back: i64,
) {
    let topic = Topic::CellChanges.name();
    let mut tpl = TopicPartitionList::new();
    for (p, next) in positions {
        let _ = tpl.add_partition_offset(topic, *p, Offset::Offset((next - back).max(0)));
    }
    if tpl.count() == 0 {
        return;
    }
    if let Err(e) = consumer.seek_partitions(tpl, Duration::from_secs(5)) {
        tracing::warn!(error = %e, "seek after a pause failed");
    }
}

/// Writes flushes in order; after each, tells the broker how far the export
/// is (for lag graphs: the checkpoint is what a restart reads).
async fn write_all(
    mut writer: Writer,
    mut rx: mpsc::Receiver<Flush>,
    consumer: Arc<StreamConsumer>,
    topic: &'static str,
) {
    while let Some(flush) = rx.recv().await {
        writer.write(&flush).await;
        let mut tpl = TopicPartitionList::new();
        for (p, r) in &flush.ranges {
            let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(r.end + 1));
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "commit the export's offsets failed");
        }
    }
}
