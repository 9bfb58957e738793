//! `N` calls of `echo/say` along one path, for counting instructions per call with valgrind,
//! which does not move with the machine's load as wall-clock time does:
//!
//! ```sh
//! cargo build --release -p alknet-runtime --example call_loop
//! for n in 1000 21000; do
//!   valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
//!     target/release/examples/call_loop typed $n 2>&1 | grep 'I *refs'
//! done   # instructions per call: (second - first) / 20000
//! ```
//!
//! Paths: `typed` (`env.call`) and `json` (`env.invoke`). With `--drain`, the env counts its
//! calls on a [`Drain`], as a node's does.

use std::hint::black_box;

use alknet_example::{EchoProtocol, EchoService, Say};
use alknet_runtime::{Drain, OperationEnv};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: call_loop typed|json N [--drain]";
    let (Some(path), Some(calls)) = (args.first(), args.get(1)) else {
        panic!("{usage}");
    };
    let calls: usize = calls.parse().expect(usage);
    let mut builder = OperationEnv::builder().local(EchoProtocol::local(EchoService::default()));
    if args.iter().any(|arg| arg == "--drain") {
        builder = builder.drain(Drain::new());
    }
    let env = builder.build().expect("echo mounts");
    // As the benchmarks run: a current-thread runtime with its timer and I/O drivers.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let text = "hello, alknet".to_string();
    let input = json!({ "text": text });
    runtime.block_on(async {
        for _ in 0..calls {
            match path.as_str() {
                "typed" => {
                    black_box(env.call(Say { text: text.clone() }).await.unwrap());
                }
                "json" => {
                    black_box(
                        env.invoke(black_box("echo"), black_box("say"), input.clone())
                            .await,
                    );
                }
                _ => panic!("{usage}"),
            }
        }
    });
}
