//! Task errors and their one mapping to ttrpc status codes.

use ttrpc::Code;

/// Why a task request failed; every message names the container.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// No such task in this shim.
    #[error("container {0}: no such task")]
    NotFound(String),
    /// A task with that id exists already.
    #[error("container {0}: task already exists")]
    AlreadyExists(String),
    /// The request (spec, module, args, annotations) is wrong.
    #[error("{0}")]
    InvalidArgument(String),
    /// The task is not in a state that allows the request.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Triage does not do this (yet) for this task.
    #[error("container {id}: {what} is not supported by Triage")]
    Unimplemented {
        /// Container id.
        id: String,
        /// The request.
        what: String,
    },
    /// Something failed on the host.
    #[error("{0}")]
    Internal(String),
}

impl From<triage_oci::PlanError> for TaskError {
    fn from(e: triage_oci::PlanError) -> Self {
        Self::InvalidArgument(e.to_string())
    }
}

impl From<triage_runtime::RuntimeError> for TaskError {
    fn from(e: triage_runtime::RuntimeError) -> Self {
        use triage_runtime::RuntimeError as R;
        match e {
            R::Plan(_) | R::Engine(_) | R::Nn(_) | R::Unsupported { .. } => {
                Self::InvalidArgument(e.to_string())
            }
            R::Io { .. } | R::Mount { .. } | R::Container { .. } => Self::Internal(e.to_string()),
        }
    }
}

impl From<triage_oci::cdi::CdiError> for TaskError {
    fn from(e: triage_oci::cdi::CdiError) -> Self {
        use triage_oci::cdi::CdiError as C;
        match e {
            C::InvalidRequest { .. }
            | C::NotAllowed { .. }
            | C::UnknownKind { .. }
            | C::UnknownDevice { .. }
            | C::NotLinux { .. } => Self::InvalidArgument(e.to_string()),
            // The node's CDI files or device nodes are wrong, not the request.
            C::Conflict { .. } | C::HostNode { .. } | C::HostNodeType { .. } => {
                Self::FailedPrecondition(e.to_string())
            }
        }
    }
}

impl From<crate::helper::HelperError> for TaskError {
    fn from(e: crate::helper::HelperError) -> Self {
        match e {
            crate::helper::HelperError::Failed(message) => Self::FailedPrecondition(message),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<TaskError> for ttrpc::Error {
    fn from(e: TaskError) -> Self {
        let code = match &e {
            TaskError::NotFound(_) => Code::NOT_FOUND,
            TaskError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            TaskError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            TaskError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            TaskError::Unimplemented { .. } => Code::UNIMPLEMENTED,
            TaskError::Internal(_) => Code::INTERNAL,
        };
        ttrpc::Error::RpcStatus(ttrpc::get_status(code, e.to_string()))
    }
}
