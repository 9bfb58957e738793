//! A service's actor behind irpc's own listener (`irpc::rpc::listen` and the generated
//! `RemoteService`), as a plain irpc server would serve it. Its requests reach the actor
//! with irpc's remote channels, which answer asynchronously rather than in place.

use std::time::Duration;

use alknet_runtime::futures::{StreamExt, stream};
use alknet_runtime::prelude::*;
use irpc::rpc::RemoteService;

/// Answers after a pause, so that its requests are not done at their first poll.
#[alk_service(namespace = "naps", version = "1.0.0")]
pub enum NapsProtocol {
    /// Sleep `ms` milliseconds, then say how long.
    #[alk_operation(
        query,
        output = u64,
        error(code = "TOO_LONG", status = 422, description = "naps last at most a second")
    )]
    Nap { ms: u64 },

    /// Count to `count`, napping `ms` milliseconds before each number.
    #[alk_operation(subscription, item = u32)]
    Count { count: u32, ms: u64 },
}

struct Naps;

impl NapsHandler for Naps {
    async fn nap(&self, _ctx: &OperationContext, request: Nap) -> Result<u64, CallError> {
        if request.ms > 1_000 {
            return Err(CallError::new("TOO_LONG", "that is not a nap"));
        }
        tokio::time::sleep(Duration::from_millis(request.ms)).await;
        Ok(request.ms)
    }

    async fn count(
        &self,
        _ctx: &OperationContext,
        request: Count,
    ) -> Result<ItemStream<u32>, CallError> {
        let pause = Duration::from_millis(request.ms);
        Ok(Box::pin(stream::iter(1..=request.count).then(
            move |n| async move {
                tokio::time::sleep(pause).await;
                Ok(n)
            },
        )))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actor_answers_what_irpcs_own_listener_hands_it() {
    let actor = NapsProtocol::spawn(Naps);
    let (server, certificate) =
        irpc::util::make_server_endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr().unwrap();
    let sender = actor.as_local().expect("a spawned actor is in-process");
    let listening = tokio::spawn(irpc::rpc::listen(
        server,
        NapsProtocolRpc::remote_handler(sender),
    ));
    let client =
        irpc::util::make_client_endpoint("127.0.0.1:0".parse().unwrap(), &[&certificate]).unwrap();
    let env = OperationEnv::builder()
        .local(NapsProtocol::service(irpc::Client::noq(client, addr)))
        .build()
        .unwrap();

    // Done at the first poll, and waiting first: both answer on irpc's channel.
    assert_eq!(env.call(Nap { ms: 0 }).await.unwrap(), 0);
    assert_eq!(env.call(Nap { ms: 20 }).await.unwrap(), 20);
    let refused = env.call(Nap { ms: 5_000 }).await.unwrap_err();
    assert_eq!(refused.code, "TOO_LONG");

    let counted = env
        .stream(Count { count: 3, ms: 5 })
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await;
    let counted: Vec<u32> = counted.into_iter().map(Result::unwrap).collect();
    assert_eq!(counted, [1, 2, 3]);

    listening.abort();
}
