//! `wasi:sockets/ip-name-lookup` for components: a granted name answers the addresses the node resolved at Create, any other is refused and logged once; the guest never drives a lookup.

use std::net::IpAddr;
use std::pin::Pin;

use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddress};
use wasmtime_wasi::p2::{Network, Pollable};

use super::component::ComponentState;

/// The interface as wasmtime-wasi 48 defines it (guests importing any 0.2 version reach it).
const INTERFACE: &str = "wasi:sockets/ip-name-lookup@0.2.12";

/// The longest name a refusal log line quotes (a DNS name has at most 253 characters).
const LOGGED_NAME_CHARS: usize = 253;

/// The addresses a lookup answers, handed out one by one.
struct AddressStream(std::vec::IntoIter<IpAddr>);

impl Pollable for AddressStream {
    // The answer is known when the stream is made: always ready.
    fn ready<'a, 'b>(&'a mut self) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(std::future::ready(()))
    }
}

/// Replaces wasmtime-wasi's lookup (which would ask the resolver of the container's
/// filesystem for any name) in `linker`, after WASI 0.2 was added to it.
pub(super) fn link(linker: &mut Linker<ComponentState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut lookup = linker.instance(INTERFACE)?;
    lookup.resource(
        "resolve-address-stream",
        ResourceType::host::<AddressStream>(),
        |mut store, rep| {
            store
                .data_mut()
                .table
                .delete(Resource::<AddressStream>::new_own(rep))?;
            Ok(())
        },
    )?;
    lookup.func_wrap(
        "resolve-addresses",
        |mut store, (network, name): (Resource<Network>, String)| {
            let state = store.data_mut();
            // The network handle is the capability this call needs.
            state.table.get(&network)?;
            let answer = match state.egress.lookup(&name) {
                Some(ips) if !ips.is_empty() => {
                    Ok(state.table.push(AddressStream(ips.into_iter()))?)
                }
                Some(_) => Err(ErrorCode::NameUnresolvable),
                None => {
                    let shown: String = name.chars().take(LOGGED_NAME_CHARS).collect();
                    state
                        .egress
                        .refused("name lookup of", &format!("{shown:?}"));
                    Err(ErrorCode::AccessDenied)
                }
            };
            Ok((answer,))
        },
    )?;
    lookup.func_wrap(
        "[method]resolve-address-stream.resolve-next-address",
        |mut store, (stream,): (Resource<AddressStream>,)| {
            let stream = store.data_mut().table.get_mut(&stream)?;
            Ok((Ok::<_, ErrorCode>(stream.0.next().map(IpAddress::from)),))
        },
    )?;
    lookup.func_wrap(
        "[method]resolve-address-stream.subscribe",
        |mut store, (stream,): (Resource<AddressStream>,)| {
            Ok((wasmtime_wasi::p2::subscribe(
                &mut store.data_mut().table,
                stream,
            )?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
