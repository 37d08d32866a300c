//! The running process: one listener per `listen` address, each serving its routes, and the
//! reload that swaps them for a new [`Config`] without dropping connections.
//!
//! A reload builds every route's [`Proxy`] and binds every new address first; only when all
//! of that worked does it commit: listeners whose address stays get the new routes and options
//! (their open connections keep running and see the new routes at their next request), new
//! addresses start serving, and addresses no longer configured stop accepting and drain. Any
//! failure leaves the running configuration untouched.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{Config, RouteConfig};
use crate::error::StartError;
use crate::proxy::Proxy;
use crate::server::{self, ListenerState, ServerOptions, SharedState};

/// A route's proxy and the listener settings it asks for.
pub struct BuiltRoute {
    pub proxy: Arc<Proxy>,
    pub server: ServerOptions,
}

/// Builds a route from its configuration (see [`crate::app`]).
pub type BuildRoute =
    Arc<dyn Fn(RouteConfig) -> BoxFuture<'static, Result<BuiltRoute, StartError>> + Send + Sync>;

struct Listener {
    bound: SocketAddr,
    state: SharedState,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// All listeners of the process, keyed by their configured address.
pub struct Listeners {
    build: BuildRoute,
    listeners: HashMap<SocketAddr, Listener>,
    /// Listeners a reload removed, still draining.
    retiring: Vec<JoinHandle<()>>,
}

impl Listeners {
    /// Builds the routes and binds their listeners.
    pub async fn start(config: &Config, build: BuildRoute) -> Result<Listeners, StartError> {
        let mut listeners = Listeners {
            build,
            listeners: HashMap::new(),
            retiring: Vec::new(),
        };
        listeners.apply(config).await?;
        Ok(listeners)
    }

    /// The address each configured `listen` address is bound to (they differ for port 0).
    pub fn bound(&self) -> HashMap<SocketAddr, SocketAddr> {
        self.listeners.iter().map(|(k, l)| (*k, l.bound)).collect()
    }

    /// Every route on every listener now.
    pub fn all_routes(&self) -> Vec<Arc<Proxy>> {
        self.listeners
            .values()
            .filter_map(|l| l.state.read().ok().map(|s| s.routes().to_vec()))
            .flatten()
            .collect()
    }

    /// The routes serving one configured address now.
    pub fn routes(&self, listen: SocketAddr) -> Vec<Arc<Proxy>> {
        self.listeners
            .get(&listen)
            .and_then(|l| l.state.read().ok().map(|s| s.routes().to_vec()))
            .unwrap_or_default()
    }

    /// Switches to `config`, or changes nothing and says why.
    pub async fn reload(&mut self, config: &Config) -> Result<(), StartError> {
        self.apply(config).await
    }

    async fn apply(&mut self, config: &Config) -> Result<(), StartError> {
        let mut groups: Vec<(SocketAddr, ServerOptions, Vec<Arc<Proxy>>)> = Vec::new();
        for addr in config.listen_addresses() {
            let mut options = None;
            let mut proxies = Vec::new();
            for route in config.routes.iter().filter(|c| c.listen == addr) {
                let built = (self.build)(route.clone()).await?;
                // Routes on one listener agree on its settings (the configuration checks).
                options.get_or_insert(built.server);
                proxies.push(built.proxy);
            }
            groups.push((addr, options.unwrap_or_default(), proxies));
        }
        let mut fresh = HashMap::new();
        for (addr, _, _) in &groups {
            if !self.listeners.contains_key(addr) {
                let listener = server::bind(*addr)
                    .await
                    .map_err(|source| StartError::Listen {
                        addr: *addr,
                        source,
                    })?;
                fresh.insert(*addr, listener);
            }
        }
        let keep: Vec<SocketAddr> = groups.iter().map(|g| g.0).collect();
        let gone: Vec<SocketAddr> = self
            .listeners
            .keys()
            .filter(|a| !keep.contains(a))
            .copied()
            .collect();
        for addr in gone {
            if let Some(l) = self.listeners.remove(&addr) {
                tracing::info!(listen = %l.bound, "listener no longer configured; draining it");
                let _ = l.stop.send(());
                self.retiring.push(l.task);
            }
        }
        for (addr, options, proxies) in groups {
            let state = ListenerState::new(options, proxies);
            for proxy in state.routes() {
                tracing::info!(
                    listen = %addr,
                    path_prefix = %if proxy.path_prefix().is_empty() { "/" } else { proxy.path_prefix() },
                    endpoint = %proxy.endpoint().base_url(),
                    service = %proxy.signer().service(),
                    region = proxy.signer().region(),
                    "route"
                );
            }
            match self.listeners.get(&addr) {
                Some(existing) => {
                    let mut current = existing.state.write().unwrap_or_else(|p| p.into_inner());
                    *current = Arc::new(state);
                }
                None => {
                    let Some(tcp) = fresh.remove(&addr) else {
                        continue;
                    };
                    let bound = tcp
                        .local_addr()
                        .map_err(|source| StartError::Listen { addr, source })?;
                    let shared = server::shared_state(state);
                    let (stop, stopped) = oneshot::channel::<()>();
                    let task = tokio::spawn(server::serve_shared(tcp, shared.clone(), async {
                        let _ = stopped.await;
                    }));
                    tracing::info!(listen = %bound, workers = crate::workers::count(), "sigv4-proxy ready");
                    self.listeners.insert(
                        addr,
                        Listener {
                            bound,
                            state: shared,
                            stop,
                            task,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Stops accepting everywhere and waits for every listener to drain (each within its
    /// drain timeout).
    pub async fn shutdown(mut self) {
        let mut tasks = std::mem::take(&mut self.retiring);
        for (_, l) in self.listeners.drain() {
            let _ = l.stop.send(());
            tasks.push(l.task);
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}
