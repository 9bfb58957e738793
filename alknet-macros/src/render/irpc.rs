//! The irpc protocol: what `#[irpc::rpc_requests(message = XMessage)]` would
//! write, emitted through the runtime's re-export so a crate that depends on the runtime
//! alone can carry it. Each request travels wrapped in `Call`, with the context it runs
//! under. The items vanish when the runtime is built without its `irpc` feature, and those
//! of the path between nodes (QUIC) when it is built without `quic`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::model::Service;

pub fn render(service: &Service) -> TokenStream {
    let rt = &service.runtime;
    let private = quote!(#rt::__private);
    let path = quote!(#rt::service_path);
    let irpc = quote!(#rt::irpc);
    let vis = &service.vis;
    let protocol = &service.ident;
    let handler = service.handler_ident();
    let response = service.response_ident();
    let rpc = format_ident!("{}Rpc", protocol, span = protocol.span());
    let message = format_ident!("{}Message", protocol, span = protocol.span());
    let serde_derives = super::serde_derives(rt);
    let namespace = service.namespace();

    let rpc_variants = service.operations.iter().map(|op| {
        let (docs, variant, request) = (&op.docs, &op.variant, &op.request);
        quote!(#docs #variant(#path::Call<#request>))
    });
    let message_variants = service.operations.iter().map(|op| {
        let (docs, variant, request) = (&op.docs, &op.variant, &op.request);
        quote!(#docs #variant(#irpc::WithChannels<#path::Call<#request>, #rpc>))
    });
    let per_operation = service.operations.iter().filter(|op| op.request_taken_by.is_none()).map(|op| {
        let (variant, request) = (&op.variant, &op.request);
        let channel = if op.is_subscription() { quote!(mpsc) } else { quote!(oneshot) };
        let tx = super::documented_as_written(rt, &op.output, |output| {
            quote!(type Tx = #irpc::channel::#channel::Sender<::core::result::Result<#output, #rt::CallError>>;)
        });
        quote! {
            impl #irpc::Channels<#rpc> for #path::Call<#request> {
                #tx
                type Rx = #irpc::channel::none::NoReceiver;
            }

            impl ::core::convert::From<#path::Call<#request>> for #rpc {
                fn from(call: #path::Call<#request>) -> Self {
                    #rpc::#variant(call)
                }
            }

            impl ::core::convert::From<#irpc::WithChannels<#path::Call<#request>, #rpc>> for #message {
                fn from(message: #irpc::WithChannels<#path::Call<#request>, #rpc>) -> Self {
                    #message::#variant(message)
                }
            }
        }
    });
    let remote_arms = service.operations.iter().map(|op| {
        let variant = &op.variant;
        quote!(#rpc::#variant(call) => #message::#variant(#irpc::WithChannels::from((call, tx, rx))))
    });
    // As in registration: only the matching kind's arms do anything; the runtime checks
    // the kind before it dispatches.
    let send_arms = |unary: bool| -> Vec<TokenStream> {
        service
            .operations
            .iter()
            .map(|op| {
                let variant = &op.variant;
                let id = format!("{namespace}/{}", op.name);
                if op.is_subscription() != unary {
                    let send = if unary { quote!(send_unary) } else { quote!(send_streaming) };
                    quote!(#protocol::#variant(request) => #path::#send(client, #path::Call { meta, request }, #response::#variant))
                } else {
                    quote!(#protocol::#variant(_) => #private::wrong_kind(#id))
                }
            })
            .collect()
    };
    let (unary_arms, streaming_arms) = (send_arms(true), send_arms(false));
    let serve_arms = service.operations.iter().map(|op| {
        let variant = &op.variant;
        let serve = if op.is_subscription() {
            quote!(streaming)
        } else {
            quote!(unary)
        };
        quote!(#message::#variant(message) => actor.#serve(message, cx))
    });
    let serve_remote_arms = service.operations.iter().map(|op| {
        let variant = &op.variant;
        let serve = if op.is_subscription() {
            quote!(streaming_remote)
        } else {
            quote!(unary_remote)
        };
        quote!(#rpc::#variant(call) => actor.#serve(call, send, peer))
    });

    let rpc_doc = format!(
        " The irpc protocol of [`{protocol}`]: each request with the context it runs under."
    );
    let message_doc = format!(" [`{rpc}`] with the channels each request answers on.");
    let spawn_doc = " Serve `handler` as an irpc actor that runs requests concurrently; the client \
                     reaches it through tokio channels, or a QUIC listener serves it to other nodes.";
    let service_doc = " Reach this service through an irpc client; mount the result with \
                       `OperationEnv::builder().local(...)`.";
    quote! {
        #private::irpc_items! {
            #[doc = #rpc_doc]
            #serde_derives
            #[derive(Debug)]
            #vis enum #rpc {
                #(#rpc_variants,)*
            }

            #[doc = #message_doc]
            #[derive(Debug)]
            #vis enum #message {
                #(#message_variants,)*
            }

            impl #irpc::Service for #rpc {
                type Message = #message;
            }

            #private::irpc_remote_items! {
                impl #irpc::rpc::RemoteService for #rpc {
                    fn with_remote_channels(
                        self,
                        rx: #irpc::rpc::noq::RecvStream,
                        tx: #irpc::rpc::noq::SendStream,
                    ) -> #message {
                        match self {
                            #(#remote_arms,)*
                        }
                    }
                }
            }

            #(#per_operation)*

            #[allow(unused_variables)]
            impl #path::IrpcProtocol for #protocol {
                type Rpc = #rpc;

                fn send(
                    client: &#path::IrpcClient<#rpc>,
                    meta: #path::CallMeta,
                    request: Self,
                ) -> #private::BoxFuture<'static, ::core::result::Result<#response, #rt::CallError>> {
                    match request {
                        #(#unary_arms,)*
                    }
                }

                fn send_subscribe(
                    client: &#path::IrpcClient<#rpc>,
                    meta: #path::CallMeta,
                    request: Self,
                ) -> #private::BoxFuture<'static, ::core::result::Result<#rt::ResponseStream<Self>, #rt::CallError>> {
                    match request {
                        #(#streaming_arms,)*
                    }
                }

                fn serve(message: #message, actor: &#path::Actor<Self>, cx: &mut ::core::task::Context<'_>) {
                    match message {
                        #(#serve_arms,)*
                    }
                }

                #private::irpc_remote_items! {
                    fn serve_remote(
                        request: #rpc,
                        send: #irpc::rpc::noq::SendStream,
                        actor: &#path::Actor<Self>,
                        peer: #path::IrpcPeer,
                    ) -> #private::BoxFuture<'static, ()> {
                        match request {
                            #(#serve_remote_arms,)*
                        }
                    }
                }
            }

            impl #protocol {
                #[doc = #spawn_doc]
                pub fn spawn<H: #handler>(handler: H) -> #irpc::Client<#rpc> {
                    #path::spawn_service::<#protocol>(#protocol::local(handler))
                }

                #[doc = #service_doc]
                pub fn service(client: #irpc::Client<#rpc>) -> #path::IrpcService {
                    #path::IrpcService::new::<#protocol>(client)
                }
            }
        }
    }
}
