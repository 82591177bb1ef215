//! The containerd Task service: one short handler per verb over shared container state.
//!
//! Each verb lives in its own file as `TaskService::task_<verb>` returning
//! `Result<_, TaskError>`; the `Task` impl below only adds the span, the log lines and
//! the conversion to ttrpc errors.

mod create;
mod delete;
mod error;
mod exec;
mod kill;
mod pause;
mod query;
mod start;
mod state;
mod stats;
mod update;

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Condvar, Mutex};

use containerd_shim_protos::api;
use containerd_shim_protos::shim::shim_ttrpc::{create_task, Task};
use ttrpc::sync::MethodHandler;
use ttrpc::TtrpcContext;

pub use error::TaskError;
use state::Container;

use crate::events::Publisher;
use crate::helper::Helpers;
use crate::reaper::ExitRegistry;

/// Signalled when containerd asks the shim to shut down and nothing is left to serve.
#[derive(Default)]
pub struct ShutdownSignal {
    done: Mutex<bool>,
    cond: Condvar,
}

impl ShutdownSignal {
    /// Wakes [`ShutdownSignal::wait`].
    pub fn signal(&self) {
        *self.done.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cond.notify_all();
    }

    /// Blocks until signalled.
    pub fn wait(&self) {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        while !*done {
            done = self.cond.wait(done).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// State shared by all handlers.
pub struct TaskService {
    namespace: String,
    containerd: std::path::PathBuf,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    exits: Arc<ExitRegistry>,
    events: Publisher,
    helpers: Helpers,
    shutdown: Arc<ShutdownSignal>,
}

impl TaskService {
    /// A service with no containers yet.
    pub fn new(
        namespace: String,
        containerd: std::path::PathBuf,
        exits: Arc<ExitRegistry>,
        events: Publisher,
        log: Option<File>,
        shutdown: Arc<ShutdownSignal>,
    ) -> Self {
        Self {
            namespace,
            containerd,
            containers: Mutex::new(HashMap::new()),
            helpers: Helpers::new(log, Arc::clone(&exits)),
            exits,
            events,
            shutdown,
        }
    }

    fn container(&self, id: &str) -> Result<Arc<Container>, TaskError> {
        self.containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| TaskError::NotFound(id.to_owned()))
    }
}

/// The ttrpc method table serving `service` as containerd's Task API, under the v2
/// name (containerd 1.6/1.7) and the v3 name (containerd 2.x).
pub fn methods(service: Arc<TaskService>) -> HashMap<String, Box<dyn MethodHandler + Send + Sync>> {
    let task: Arc<dyn Task + Send + Sync> = Arc::new(TaskApi(Arc::clone(&service)));
    let mut methods = create_task(Arc::clone(&task));
    let v3: Vec<_> = create_task(task)
        .into_iter()
        .map(|(name, handler)| {
            (
                name.replacen("/containerd.task.v2.Task/", "/containerd.task.v3.Task/", 1),
                handler,
            )
        })
        .collect();
    methods.extend(v3);
    methods
}

/// Adapter from the generated `Task` trait to [`TaskService`]'s handlers.
struct TaskApi(Arc<TaskService>);

/// Runs one handler inside a span named after the verb, with the container id.
fn handle<T>(
    verb: &'static str,
    id: &str,
    f: impl FnOnce() -> Result<T, TaskError>,
) -> ttrpc::Result<T> {
    let span = tracing::info_span!("task", verb, id);
    let _guard = span.enter();
    tracing::debug!("request");
    let result = f();
    match &result {
        Ok(_) => tracing::debug!("done"),
        Err(e) => tracing::warn!("{e}"),
    }
    result.map_err(Into::into)
}

fn unsupported<T>(verb: &'static str, id: &str) -> ttrpc::Result<T> {
    handle(verb, id, || {
        Err(TaskError::Unimplemented {
            id: id.to_owned(),
            what: verb.to_owned(),
        })
    })
}

impl Task for TaskApi {
    fn state(&self, _: &TtrpcContext, req: api::StateRequest) -> ttrpc::Result<api::StateResponse> {
        handle("state", &req.id, || self.0.task_state(&req))
    }

    fn create(
        &self,
        _: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> ttrpc::Result<api::CreateTaskResponse> {
        let id = req.id.clone();
        handle("create", &id, || self.0.task_create(req))
    }

    fn start(&self, _: &TtrpcContext, req: api::StartRequest) -> ttrpc::Result<api::StartResponse> {
        handle("start", &req.id, || self.0.task_start(&req))
    }

    fn delete(
        &self,
        _: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> ttrpc::Result<api::DeleteResponse> {
        handle("delete", &req.id, || self.0.task_delete(&req))
    }

    fn pids(&self, _: &TtrpcContext, req: api::PidsRequest) -> ttrpc::Result<api::PidsResponse> {
        handle("pids", &req.id, || self.0.task_pids(&req))
    }

    fn pause(&self, _: &TtrpcContext, req: api::PauseRequest) -> ttrpc::Result<api::Empty> {
        handle("pause", &req.id, || self.0.task_pause(&req.id))
    }

    fn resume(&self, _: &TtrpcContext, req: api::ResumeRequest) -> ttrpc::Result<api::Empty> {
        handle("resume", &req.id, || self.0.task_resume(&req.id))
    }

    fn checkpoint(
        &self,
        _: &TtrpcContext,
        req: api::CheckpointTaskRequest,
    ) -> ttrpc::Result<api::Empty> {
        unsupported("checkpoint", &req.id)
    }

    fn kill(&self, _: &TtrpcContext, req: api::KillRequest) -> ttrpc::Result<api::Empty> {
        handle("kill", &req.id, || self.0.task_kill(&req))
    }

    fn exec(&self, _: &TtrpcContext, req: api::ExecProcessRequest) -> ttrpc::Result<api::Empty> {
        handle("exec", &req.id, || self.0.task_exec(&req))
    }

    fn resize_pty(
        &self,
        _: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> ttrpc::Result<api::Empty> {
        handle("resize_pty", &req.id, || {
            let container = self.0.container(&req.id)?;
            let target = container.process(&req.exec_id)?;
            let process = target.get(&container);
            let Some(master) = process.terminal.get() else {
                return Err(TaskError::FailedPrecondition(format!(
                    "{}: has no terminal to resize",
                    process.label()
                )));
            };
            crate::console::resize(master, req.width, req.height).map_err(|e| {
                TaskError::Internal(format!("{}: resizing the terminal: {e}", process.label()))
            })?;
            tracing::debug!(width = req.width, height = req.height, "terminal resized");
            Ok(api::Empty::new())
        })
    }

    fn close_io(&self, _: &TtrpcContext, req: api::CloseIORequest) -> ttrpc::Result<api::Empty> {
        // Each process opens its stdin FIFO itself and the shim holds no copy: the
        // process sees EOF as soon as containerd closes the writing end.
        handle("close_io", &req.id, || {
            let container = self.0.container(&req.id)?;
            container.process(&req.exec_id)?;
            Ok(api::Empty::new())
        })
    }

    fn update(&self, _: &TtrpcContext, req: api::UpdateTaskRequest) -> ttrpc::Result<api::Empty> {
        handle("update", &req.id, || self.0.task_update(&req))
    }

    fn wait(&self, _: &TtrpcContext, req: api::WaitRequest) -> ttrpc::Result<api::WaitResponse> {
        handle("wait", &req.id, || self.0.task_wait(&req))
    }

    fn stats(&self, _: &TtrpcContext, req: api::StatsRequest) -> ttrpc::Result<api::StatsResponse> {
        handle("stats", &req.id, || self.0.task_stats(&req))
    }

    fn connect(
        &self,
        _: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> ttrpc::Result<api::ConnectResponse> {
        handle("connect", &req.id, || self.0.task_connect(&req))
    }

    fn shutdown(&self, _: &TtrpcContext, req: api::ShutdownRequest) -> ttrpc::Result<api::Empty> {
        handle("shutdown", &req.id, || {
            let remaining = self
                .0
                .containers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len();
            if remaining == 0 || req.now {
                tracing::info!(remaining, "shutting down");
                self.0.shutdown.signal();
            }
            Ok(api::Empty::new())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_api_is_served_under_v2_and_v3_names() {
        let service = Arc::new(TaskService::new(
            "ns".into(),
            "/nonexistent/containerd.sock".into(),
            Arc::new(ExitRegistry::default()),
            Publisher::spawn("/nonexistent/ttrpc.sock".into(), "ns".into()).unwrap(),
            None,
            Arc::new(ShutdownSignal::default()),
        ));
        let names: Vec<String> = methods(service).into_keys().collect();
        for verb in [
            "Create", "Start", "Delete", "Kill", "Wait", "State", "Shutdown",
        ] {
            for version in ["v2", "v3"] {
                let name = format!("/containerd.task.{version}.Task/{verb}");
                assert!(names.contains(&name), "{name} missing from {names:?}");
            }
        }
        assert_eq!(names.len() % 2, 0);
    }
}
