//! `refuse_core_dumps`: its own test binary, since it changes the whole process.

use alknet_runtime::config::SecretSettings;
use alknet_secret::SecretService;

#[test]
fn a_secret_node_can_refuse_core_dumps() {
    let dir = tempfile::tempdir().unwrap();
    SecretService::open(&SecretSettings {
        file: Some(dir.path().join("secret.json")),
        refuse_core_dumps: true,
        ..SecretSettings::default()
    })
    .unwrap();
    let mut limit = libc::rlimit {
        rlim_cur: 1,
        rlim_max: 1,
    };
    // SAFETY: `limit` is a valid rlimit to write into.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut limit) }, 0);
    assert_eq!((limit.rlim_cur, limit.rlim_max), (0, 0));
    // SAFETY: PR_GET_DUMPABLE takes no arguments.
    assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE) }, 0);
}
