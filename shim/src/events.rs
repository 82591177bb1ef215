//! Publishes task events to containerd, in order, from one thread.

use std::sync::mpsc::{channel, Sender};
use std::time::{Duration, SystemTime};

use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::MessageDyn;
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim::events_ttrpc::EventsClient;
use ttrpc::context::Context;

/// A task event with its topic.
pub enum TaskEvent {
    /// `/tasks/create`.
    Create(TaskCreate),
    /// `/tasks/start`.
    Start(TaskStart),
    /// `/tasks/exit`.
    Exit(TaskExit),
    /// `/tasks/delete`.
    Delete(TaskDelete),
    /// `/tasks/oom`.
    Oom(TaskOOM),
    /// `/tasks/exec-added`.
    ExecAdded(TaskExecAdded),
    /// `/tasks/exec-started`.
    ExecStarted(TaskExecStarted),
    /// `/tasks/paused`.
    Paused(TaskPaused),
    /// `/tasks/resumed`.
    Resumed(TaskResumed),
}

impl TaskEvent {
    fn topic(&self) -> &'static str {
        match self {
            Self::Create(_) => "/tasks/create",
            Self::Start(_) => "/tasks/start",
            Self::Exit(_) => "/tasks/exit",
            Self::Delete(_) => "/tasks/delete",
            Self::Oom(_) => "/tasks/oom",
            Self::ExecAdded(_) => "/tasks/exec-added",
            Self::ExecStarted(_) => "/tasks/exec-started",
            Self::Paused(_) => "/tasks/paused",
            Self::Resumed(_) => "/tasks/resumed",
        }
    }

    fn container_id(&self) -> &str {
        match self {
            Self::Create(e) => &e.container_id,
            Self::Start(e) => &e.container_id,
            Self::Exit(e) => &e.container_id,
            Self::Delete(e) => &e.container_id,
            Self::Oom(e) => &e.container_id,
            Self::ExecAdded(e) => &e.container_id,
            Self::ExecStarted(e) => &e.container_id,
            Self::Paused(e) => &e.container_id,
            Self::Resumed(e) => &e.container_id,
        }
    }

    fn message(&self) -> &dyn MessageDyn {
        match self {
            Self::Create(e) => e,
            Self::Start(e) => e,
            Self::Exit(e) => e,
            Self::Delete(e) => e,
            Self::Oom(e) => e,
            Self::ExecAdded(e) => e,
            Self::ExecStarted(e) => e,
            Self::Paused(e) => e,
            Self::Resumed(e) => e,
        }
    }
}

/// Converts a time to protobuf's `Timestamp`.
pub fn timestamp(at: SystemTime) -> Timestamp {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = since.as_secs() as i64;
    ts.nanos = since.subsec_nanos() as i32;
    ts
}

/// Queue of events; a background thread forwards them to containerd's ttrpc socket.
#[derive(Clone)]
pub struct Publisher {
    queue: Sender<TaskEvent>,
}

impl Publisher {
    /// Starts the forwarding thread for containerd at `ttrpc_address` (a socket path).
    pub fn spawn(ttrpc_address: String, namespace: String) -> std::io::Result<Self> {
        let (queue, events) = channel::<TaskEvent>();
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                let mut client: Option<EventsClient> = None;
                for event in events {
                    let span = tracing::debug_span!("event", id = event.container_id());
                    let _guard = span.enter();
                    forward(&mut client, &ttrpc_address, &namespace, &event);
                }
            })?;
        Ok(Self { queue })
    }

    /// Queues an event; events reach containerd in the order they were queued.
    pub fn publish(&self, event: TaskEvent) {
        if self.queue.send(event).is_err() {
            tracing::error!("event thread is gone; event dropped");
        }
    }
}

fn forward(client: &mut Option<EventsClient>, address: &str, namespace: &str, event: &TaskEvent) {
    let message = event.message();
    let mut any = Any::new();
    any.type_url = message.descriptor_dyn().full_name().to_owned();
    any.value = match message.write_to_bytes_dyn() {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(topic = event.topic(), "cannot encode event: {e}");
            return;
        }
    };
    let mut envelope = Envelope::new();
    envelope.set_timestamp(timestamp(SystemTime::now()));
    envelope.set_namespace(namespace.to_owned());
    envelope.set_topic(event.topic().to_owned());
    envelope.set_event(any);
    let mut request = ForwardRequest::new();
    request.set_envelope(envelope);

    for attempt in 0..3 {
        if client.is_none() {
            match ttrpc::Client::connect(&format!("unix://{address}")) {
                Ok(c) => *client = Some(EventsClient::new(c)),
                Err(e) => {
                    tracing::warn!(
                        topic = event.topic(),
                        attempt,
                        "connecting to containerd: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
        }
        let sent = client
            .as_ref()
            .map(|c| c.forward(Context::default(), &request));
        match sent {
            Some(Ok(_)) => {
                tracing::debug!(topic = event.topic(), "event published");
                return;
            }
            Some(Err(e)) => {
                tracing::warn!(topic = event.topic(), attempt, "publishing event: {e}");
                *client = None;
            }
            None => {}
        }
    }
    tracing::error!(topic = event.topic(), "event dropped after 3 attempts");
}
