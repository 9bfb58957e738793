//! The threads a storage service's store calls run on.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alknet_runtime::CallError;
use crossbeam_channel::{RecvTimeoutError, Sender};

use crate::Write;
use crate::store::{Store, StoreError, Written};

type Job = Box<dyn FnOnce(&dyn Store) + Send>;

/// A call's writes and where their outcome goes; the writes come back with it.
struct WriteJob {
    writes: Vec<Write>,
    reply: tokio::sync::oneshot::Sender<(Vec<Write>, Result<Written, StoreError>)>,
}

/// The most calls' writes one commit takes.
const MAX_COMMIT_BATCHES: usize = 256;

/// A store waits on disk and on locks, so its calls never run on the async runtime. They
/// run on threads that live as long as the service: reads on as many threads as the store
/// has read connections, all taking from one queue, so a read waits only for a busy
/// connection, never behind a slow call on another; writes, which the store serialises
/// anyway, on one thread of their own, so a write never waits behind reads, and the
/// writes of every call waiting when it gets to them are committed together
/// ([`Store::write_each`]): under load, a commit serves many calls. (Tokio's blocking pool
/// would start a thread for every call in flight, each then waiting for one of a few
/// connections, and commit each call alone.)
///
/// A point read (one row by its key) made while no other read runs is the exception: it
/// runs on the caller's thread. It takes a few microseconds; the hop to a reader thread
/// and back takes tens. Once reads overlap, every read takes the hop again, so at most one
/// runtime thread is ever in the store, and a busy store reads on its own threads. (A
/// store whose reads share the writer's connection always hops: a read there may wait out
/// a commit.)
#[derive(Clone)]
pub(crate) struct StoreThreads {
    reads: Sender<Job>,
    writes: Sender<WriteJob>,
    store: Arc<dyn Store>,
    /// Reads running or queued, each counted until its work is done (not until its caller
    /// stops waiting).
    reading: Arc<AtomicUsize>,
}

/// One read counted in [`StoreThreads`]' `reading` until it is dropped.
struct Reading(Arc<AtomicUsize>);

impl Reading {
    /// Count a read; whether it is the only one.
    fn begin(reading: &Arc<AtomicUsize>) -> (Reading, bool) {
        let alone = reading.fetch_add(1, Ordering::AcqRel) == 0;
        (Reading(reading.clone()), alone)
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl StoreThreads {
    /// The threads over `store`: `readers` of them for reads, and the writer, which, every
    /// `poll` it has no write to make, tells `on_head` where the log's head stands — so
    /// another process's writes to the same database reach the service too.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        readers: usize,
        poll: Duration,
        on_head: impl Fn(u64) + Send + 'static,
    ) -> Result<Self, StoreError> {
        Ok(StoreThreads {
            reads: spawn_readers(store.clone(), readers.max(1))?,
            writes: spawn_writer(store.clone(), poll, on_head)?,
            store,
            reading: Arc::default(),
        })
    }

    /// A read on a reader thread.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, CallError> {
        let (reading, _) = Reading::begin(&self.reading);
        self.hop(work, reading).await
    }

    /// A read of one row by its key: on this thread if no other read runs, else as
    /// [`read`](Self::read).
    pub(crate) async fn read_point<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, CallError> {
        let (reading, alone) = Reading::begin(&self.reading);
        if !alone || !self.store.has_readers() {
            return self.hop(work, reading).await;
        }
        let read = catch_unwind(AssertUnwindSafe(|| work(&*self.store)));
        drop(reading);
        read.map_err(|_| panicked())?.map_err(crate::store_error)
    }

    /// `work` on a reader thread, counted as `reading` until it is done there.
    async fn hop<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
        reading: Reading,
    ) -> Result<T, CallError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.reads
            .send(Box::new(move |store| {
                let read = work(store);
                drop(reading);
                // The caller may have gone; the work is done either way.
                let _ = reply.send(read);
            }))
            .map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| panicked())?
            .map_err(crate::store_error)
    }

    /// `writes` in one transaction, as [`Store::write`]; handed back with what they did.
    pub(crate) async fn write(
        &self,
        writes: Vec<Write>,
    ) -> Result<(Vec<Write>, Written), CallError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writes
            .send(WriteJob { writes, reply })
            .map_err(|_| stopped())?;
        let (writes, written) = answer.await.map_err(|_| panicked())?;
        Ok((writes, written.map_err(crate::store_error)?))
    }
}

/// The writer: it waits for a call's writes, takes every other call's that waits too, and
/// commits them together; while none come, it reads the log's head every `poll`.
fn spawn_writer(
    store: Arc<dyn Store>,
    poll: Duration,
    on_head: impl Fn(u64) + Send + 'static,
) -> Result<Sender<WriteJob>, StoreError> {
    let (sender, jobs) = crossbeam_channel::unbounded::<WriteJob>();
    std::thread::Builder::new()
        .name("alknet-storage-write".to_string())
        .spawn(move || {
            loop {
                let first = match jobs.recv_timeout(poll) {
                    Ok(first) => first,
                    Err(RecvTimeoutError::Timeout) => {
                        // A head that cannot be read now is read again at the next poll.
                        if let Ok(log) = store.log() {
                            on_head(log.head);
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                };
                let mut batch = vec![first];
                batch.extend(jobs.try_iter().take(MAX_COMMIT_BATCHES - 1));
                let results = catch_unwind(AssertUnwindSafe(|| {
                    let writes: Vec<&[Write]> =
                        batch.iter().map(|job| job.writes.as_slice()).collect();
                    store.write_each(&writes)
                }));
                // After a panic, the batch's replies are dropped: each caller answers an
                // internal error.
                if let Ok(results) = results {
                    for (job, result) in batch.into_iter().zip(results) {
                        // The caller may have gone; the write is done either way.
                        let _ = job.reply.send((job.writes, result));
                    }
                }
            }
        })
        .map_err(|err| StoreError::Database(format!("cannot start the storage writer: {err}")))?;
    Ok(sender)
}

/// `count` readers taking jobs from one queue until every sender of it is gone.
fn spawn_readers(store: Arc<dyn Store>, count: usize) -> Result<Sender<Job>, StoreError> {
    let (sender, jobs) = crossbeam_channel::unbounded::<Job>();
    for _ in 0..count {
        let (store, jobs) = (store.clone(), jobs.clone());
        std::thread::Builder::new()
            .name("alknet-storage-read".to_string())
            .spawn(move || {
                for job in jobs {
                    // A job that panics drops its reply, which its caller answers as an
                    // internal error; the thread goes on with the next.
                    let _ = catch_unwind(AssertUnwindSafe(|| job(&*store)));
                }
            })
            .map_err(|err| StoreError::Database(format!("cannot start a storage reader: {err}")))?;
    }
    Ok(sender)
}

fn stopped() -> CallError {
    CallError::internal("the storage threads have stopped")
}

fn panicked() -> CallError {
    CallError::internal("the storage call failed: it panicked")
}

#[cfg(test)]
mod tests {
    use std::thread::ThreadId;

    use super::*;
    use crate::sqlite::SqliteStore;
    use crate::store::Limits;

    fn start(store: SqliteStore) -> StoreThreads {
        StoreThreads::start(Arc::new(store), 2, Duration::from_secs(60), |_| {}).unwrap()
    }

    /// Threads over a store in a file, with reader connections of its own, and the
    /// directory that holds it.
    fn threads() -> (StoreThreads, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.sqlite3"), Limits::default());
        (start(store.unwrap()), dir)
    }

    fn here() -> ThreadId {
        std::thread::current().id()
    }

    #[tokio::test]
    async fn a_point_read_alone_runs_on_the_callers_thread() {
        let (threads, _dir) = threads();
        let ran_on = threads.read_point(|_| Ok(here())).await.unwrap();
        assert_eq!(ran_on, here());
        let ran_on = threads.read(|_| Ok(here())).await.unwrap();
        assert_ne!(ran_on, here(), "a read that is not a point read hops");
    }

    // The slow read runs on a worker while this thread waits for it to start.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_point_read_beside_another_read_hops_to_a_reader_thread() {
        let (threads, _dir) = threads();
        let (started, running) = std::sync::mpsc::channel();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let slow = tokio::spawn({
            let threads = threads.clone();
            async move {
                threads
                    .read(move |_| {
                        started.send(()).unwrap();
                        wait.recv().unwrap();
                        Ok(())
                    })
                    .await
            }
        });
        running.recv().unwrap();
        let ran_on = threads.read_point(|_| Ok(here())).await.unwrap();
        assert_ne!(ran_on, here());
        release.send(()).unwrap();
        slow.await.unwrap().unwrap();
        // With the other read done, the next point read is alone again.
        assert_eq!(threads.read_point(|_| Ok(here())).await.unwrap(), here());
    }

    #[tokio::test]
    async fn a_store_whose_reads_share_the_writers_connection_always_hops() {
        let threads = start(SqliteStore::in_memory(Limits::default()).unwrap());
        assert_ne!(threads.read_point(|_| Ok(here())).await.unwrap(), here());
    }

    #[tokio::test]
    async fn a_point_read_that_panics_is_an_internal_error_and_frees_its_count() {
        let (threads, _dir) = threads();
        let err = threads
            .read_point(|_| -> Result<(), StoreError> { panic!("a bug") })
            .await
            .unwrap_err();
        assert_eq!(err.code, alknet_runtime::codes::INTERNAL, "{err}");
        assert_eq!(threads.read_point(|_| Ok(here())).await.unwrap(), here());
    }
}
