//! Exec: add a process to a running native container (`ctr task exec`, `kubectl exec`).

use std::path::Path;

use containerd_shim_protos::api;
use containerd_shim_protos::events::task::TaskExecAdded;
use triage_runtime::container::state_root;
use triage_runtime::stdio::{ContainerStdio, StdioPaths};

use super::create::{attach_terminal, bind_console};
use super::state::{ExecProcess, Status};
use super::{TaskError, TaskService};
use crate::events::TaskEvent;

impl TaskService {
    pub(super) fn task_exec(&self, req: &api::ExecProcessRequest) -> Result<api::Empty, TaskError> {
        let container = self.container(&req.id)?;
        if container.is_wasm {
            return Err(TaskError::Unimplemented {
                id: req.id.clone(),
                what: format!(
                    "exec (process {:?}) in a Wasm container: its workload is one Wasm \
                     instance, with no process environment to add to",
                    req.exec_id
                ),
            });
        }
        let spec = req
            .spec
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_default();
        if spec.is_empty() {
            return Err(TaskError::InvalidArgument(format!(
                "container {}: exec {} carries no process spec",
                req.id, req.exec_id
            )));
        }
        let status = container.lock().status;
        if status != Status::Running {
            return Err(TaskError::FailedPrecondition(format!(
                "container {}: cannot exec into a task that is {status:?}",
                req.id
            )));
        }
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
        };
        container.add_exec(&req.exec_id, stdio, spec, req.terminal)?;
        self.events.publish(TaskEvent::ExecAdded(TaskExecAdded {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        }));
        tracing::info!(exec_id = %req.exec_id, "exec process added");
        Ok(api::Empty::new())
    }

    /// Starts `exec` through a helper (libcontainer's tenant builder); returns its pid.
    pub(super) fn spawn_exec(
        &self,
        id: &str,
        bundle: &Path,
        exec: &ExecProcess,
    ) -> Result<i32, TaskError> {
        // libcontainer reads the process from a file; it lives beside its state.
        let process = state_root(bundle).join(format!("exec-{}.json", exec.exec_id));
        std::fs::write(&process, &exec.spec).map_err(|e| {
            TaskError::Internal(format!(
                "container {id}: writing {}: {e}",
                process.display()
            ))
        })?;
        let result = self.run_exec_helper(id, bundle, exec, &process);
        let _ = std::fs::remove_file(&process);
        result
    }

    fn run_exec_helper(
        &self,
        id: &str,
        bundle: &Path,
        exec: &ExecProcess,
        process: &Path,
    ) -> Result<i32, TaskError> {
        let console = exec.tty.then(|| bind_console(id)).transpose()?;
        // Relayed: the relays end by themselves when the process's last writer exits.
        let stdio = match console {
            Some(_) => None,
            None => {
                let (fds, relays) = ContainerStdio::open_relayed(id, &exec.stdio)?;
                let _ = exec.process.output.set(relays);
                Some(fds)
            }
        };
        let pid = self.helpers.container(id, bundle).exec(
            process,
            console.as_ref().map(|c| c.path()),
            stdio,
        )?;
        if let Some(console) = console {
            match attach_terminal(id, &console, &exec.stdio) {
                Ok((master, output)) => {
                    let _ = exec.process.terminal.set(master);
                    let _ = exec.process.output.set(output);
                }
                Err(e) => {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    return Err(e);
                }
            }
        }
        Ok(pid)
    }
}
