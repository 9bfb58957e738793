//! Memory for the seed: one page of its own, locked against swap and left out of core
//! dumps where the OS allows, and zeroed before it is freed.

use std::sync::atomic::{AtomicBool, Ordering};

use zeroize::Zeroize;

/// The length of a BIP-39 seed, which is what the service keeps.
pub const SEED_LEN: usize = 64;

const PAGE: usize = 4096;

/// A page-aligned page: `mlock` and `madvise` work on whole pages, so the seed shares its
/// page with nothing that could be swapped out or dumped with it.
#[repr(C, align(4096))]
struct Page([u8; PAGE]);

/// The seed, in memory the rest of the process does not share.
pub struct SeedMemory {
    page: Box<Page>,
    locked: bool,
}

impl SeedMemory {
    /// A zeroed page, locked and excluded from dumps as far as the OS lets this process.
    pub fn new() -> Self {
        let page = Box::new(Page([0; PAGE]));
        let address = page.0.as_ptr() as *mut libc::c_void;
        // SAFETY: `address` is the start of a live, page-aligned allocation of PAGE bytes.
        let locked = unsafe { libc::mlock(address, PAGE) } == 0;
        if !locked {
            warn_once(
                &MLOCK_WARNED,
                "mlock",
                std::io::Error::last_os_error(),
                "the seed's page may be swapped out (raise `ulimit -l` to let it be locked)",
            );
        }
        #[cfg(target_os = "linux")]
        {
            // SAFETY: as above.
            if unsafe { libc::madvise(address, PAGE, libc::MADV_DONTDUMP) } != 0 {
                warn_once(
                    &DONTDUMP_WARNED,
                    "madvise(MADV_DONTDUMP)",
                    std::io::Error::last_os_error(),
                    "a core dump may contain the seed's page",
                );
            }
        }
        SeedMemory { page, locked }
    }

    /// The seed.
    pub fn seed(&self) -> &[u8; SEED_LEN] {
        self.page.0[..SEED_LEN]
            .try_into()
            .expect("the page holds the seed")
    }

    /// Where to write the seed.
    pub fn seed_mut(&mut self) -> &mut [u8; SEED_LEN] {
        (&mut self.page.0[..SEED_LEN])
            .try_into()
            .expect("the page holds the seed")
    }
}

impl Drop for SeedMemory {
    fn drop(&mut self) {
        self.page.0.zeroize();
        #[cfg(test)]
        tests::record_freed(&self.page.0);
        if self.locked {
            // SAFETY: the page is still allocated; it was locked in `new`.
            unsafe { libc::munlock(self.page.0.as_ptr() as *const libc::c_void, PAGE) };
        }
    }
}

static MLOCK_WARNED: AtomicBool = AtomicBool::new(false);
#[cfg(target_os = "linux")]
static DONTDUMP_WARNED: AtomicBool = AtomicBool::new(false);

fn warn_once(flag: &AtomicBool, call: &str, err: std::io::Error, consequence: &str) {
    if !flag.swap(true, Ordering::Relaxed) {
        tracing::warn!(target: "alknet::secret", "{call} failed ({err}): {consequence}");
    }
}

/// Refuse core dumps of this whole process: no core file (`RLIMIT_CORE` 0) and, on Linux,
/// not dumpable, which also keeps other processes of the same user from reading its
/// memory through ptrace or `/proc/PID/mem`.
pub fn refuse_core_dumps() -> std::io::Result<()> {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `none` is a valid rlimit for the duration of the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_DUMPABLE takes one integer argument; the rest are ignored.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::RefCell;

    use super::*;

    thread_local! {
        /// For each seed page freed on this thread, in order: whether it was all zeros.
        static FREED: RefCell<Vec<bool>> = const { RefCell::new(Vec::new()) };
    }

    /// What a page held as it was freed: a test's window on memory it may not read after.
    pub(crate) fn record_freed(page: &[u8; PAGE]) {
        FREED.with(|freed| freed.borrow_mut().push(page.iter().all(|&byte| byte == 0)));
    }

    /// The seed pages freed on this thread since the last call: whether each was zeroed.
    pub(crate) fn take_freed() -> Vec<bool> {
        FREED.with(|freed| freed.take())
    }

    #[test]
    fn a_page_is_zeroed_before_it_is_freed() {
        take_freed();
        let mut memory = SeedMemory::new();
        memory.seed_mut().copy_from_slice(&[7; SEED_LEN]);
        drop(memory);
        assert_eq!(take_freed(), [true]);
    }

    #[test]
    fn keeps_the_seed_on_its_own_locked_page() {
        let mut memory = SeedMemory::new();
        assert_eq!(memory.seed(), &[0; SEED_LEN]);
        memory.seed_mut().copy_from_slice(&[7; SEED_LEN]);
        assert_eq!(memory.seed(), &[7; SEED_LEN]);
        assert_eq!(memory.page.0.as_ptr() as usize % PAGE, 0);
        // The suite runs where `ulimit -l` allows a page (8 MiB is the usual default).
        assert!(memory.locked, "mlock of one page failed");
    }
}
