//! A container's memory limit as a budget for its guests' linear memories, shared by every instance of the container.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::mib;

/// How much of a container's memory limit a guest's linear memories may use: the limit
/// less what this process already holds (the engine, the compiled module) and a margin
/// for the host calls' own buffers.
pub fn guest_memory_budget(container_limit: u64, resident: u64) -> u64 {
    const HOST_MARGIN: u64 = 4 << 20;
    container_limit.saturating_sub(resident.saturating_add(HOST_MARGIN))
}

/// The part of a container's memory limit left to a guest's linear memories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Container id.
    pub id: String,
    /// `linux.resources.memory.limit`, bytes.
    pub container_limit: u64,
    /// What this process held when the budget was set.
    pub engine_resident: u64,
    /// What the guest's linear memories may use.
    pub budget: u64,
}

impl MemoryBudget {
    /// The budget under `container_limit` given what this process holds now: measure it
    /// after compiling, when the engine and the module's code are resident.
    pub fn measure(id: &str, container_limit: u64) -> Self {
        let resident = resident_bytes().unwrap_or(16 << 20);
        Self {
            id: id.to_owned(),
            container_limit,
            engine_resident: resident,
            budget: guest_memory_budget(container_limit, resident),
        }
    }

    /// The message for a refused `memory.grow`; `grow` says what was asked ("to 65.0 MiB").
    pub fn refusal(&self, grow: &str) -> String {
        format!(
            "container {}: memory.grow {grow} refused: the container's memory limit is {} ({} bytes), of which the engine holds {}, leaving {} for the guest",
            self.id,
            mib(self.container_limit),
            self.container_limit,
            mib(self.engine_resident),
            mib(self.budget)
        )
    }
}

/// This process's resident memory (`VmRSS`), if `/proc` says.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// A budget that every instance of one container draws on: a job's single instance, or a
/// service's one instance per request in flight. Their linear memories together stay
/// within it, so many requests at once cannot add up past the container's limit.
#[derive(Debug)]
pub struct MemoryAccount {
    /// The budget.
    pub budget: MemoryBudget,
    used: AtomicU64,
}

impl MemoryAccount {
    /// An account with nothing drawn yet.
    pub fn new(budget: MemoryBudget) -> Arc<Self> {
        Arc::new(Self {
            budget,
            used: AtomicU64::new(0),
        })
    }

    /// What the instances hold now, bytes.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` if they fit in what is left.
    fn draw(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes)
                    .filter(|&total| total <= self.budget.budget)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// One instance's share of a [`MemoryAccount`]: its store's resource limiter. What it drew
/// goes back to the account when the store (and with it the instance) is dropped.
#[derive(Debug, Default)]
pub struct MemoryLimiter {
    account: Option<Arc<MemoryAccount>>,
    drawn: u64,
    /// The size a refused `memory.grow` asked for, for the trap message that may follow.
    pub refused_grow: Option<u64>,
}

impl MemoryLimiter {
    /// A limiter drawing on `account`; `None` limits nothing (no memory limit).
    pub fn new(account: Option<Arc<MemoryAccount>>) -> Self {
        Self {
            account,
            drawn: 0,
            refused_grow: None,
        }
    }

    /// Whether a linear memory may grow from `current` to `desired` bytes; a refusal is
    /// logged and written to the container's stderr once per refused size.
    pub fn memory_growing(&mut self, current: u64, desired: u64) -> bool {
        let Some(account) = self.account.as_ref() else {
            return true;
        };
        let more = desired.saturating_sub(current);
        if account.draw(more) {
            self.drawn += more;
            return true;
        }
        let message = self.refusal(desired);
        tracing::warn!(container = %account.budget.id, "{message}");
        super::to_stderr(&message);
        self.refused_grow = Some(desired);
        false
    }

    /// The refusal message for a grow to `desired` bytes.
    pub fn refusal(&self, desired: u64) -> String {
        let Some(account) = self.account.as_ref() else {
            return String::new();
        };
        let others = account.used().saturating_sub(self.drawn);
        let mut message = account.budget.refusal(&format!("to {}", mib(desired)));
        if others > 0 {
            message.push_str(&format!(
                ", of which the container's other instances hold {}",
                mib(others)
            ));
        }
        message
    }

    /// What this instance has drawn, bytes.
    pub fn drawn(&self) -> u64 {
        self.drawn
    }

    /// The refusal that a trap right after it probably follows from.
    pub fn refused(&self) -> Option<String> {
        self.refused_grow.map(|desired| self.refusal(desired))
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        if let Some(account) = &self.account {
            account.give_back(self.drawn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(budget: u64) -> Arc<MemoryAccount> {
        MemoryAccount::new(MemoryBudget {
            id: "c1".into(),
            container_limit: budget + (8 << 20),
            engine_resident: 4 << 20,
            budget,
        })
    }

    #[test]
    fn instances_share_one_budget_and_give_it_back_when_dropped() {
        let shared = account(10 << 20);
        let mut first = MemoryLimiter::new(Some(Arc::clone(&shared)));
        let mut second = MemoryLimiter::new(Some(Arc::clone(&shared)));
        assert!(first.memory_growing(0, 6 << 20));
        assert!(!second.memory_growing(0, 6 << 20));
        let message = second.refused().unwrap();
        assert!(
            message.ends_with("leaving 10.0 MiB for the guest, of which the container's other instances hold 6.0 MiB"),
            "{message}"
        );
        assert!(second.memory_growing(0, 4 << 20));
        assert_eq!(shared.used(), 10 << 20);
        drop(first);
        assert_eq!(shared.used(), 4 << 20);
        assert!(second.memory_growing(4 << 20, 9 << 20));
        drop(second);
        assert_eq!(shared.used(), 0);
        let mut unlimited = MemoryLimiter::new(None);
        assert!(unlimited.memory_growing(0, u64::MAX));
    }
}
