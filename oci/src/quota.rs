//! A container's CPU and memory quota from `linux.resources`, checked against the node
//! profile, with the profile's defaults filled in where the spec sets no limit.

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResources, LinuxResourcesBuilder, Spec,
};

use crate::error::PlanError;
use crate::node_profile::{bytes_text, cpu_text, NodeProfile};

/// The CFS period Triage uses when the spec sets a quota without one (runc's default).
pub const DEFAULT_CFS_PERIOD_US: u64 = 100_000;

/// What a container asks of the node, read from its OCI resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupQuota {
    /// CPU limit from `cpu.quota / cpu.period`, in millicores.
    pub cpu_limit_millis: Option<u64>,
    /// CPU request from `cpu.shares` (1024 shares = 1 CPU, as kubelet converts it).
    pub cpu_request_millis: Option<u64>,
    /// `memory.limit`, bytes.
    pub memory_limit: Option<u64>,
    /// `memory.reservation`, bytes.
    pub memory_reservation: Option<u64>,
}

impl CgroupQuota {
    /// Reads the quota from OCI resources; unset, zero and negative values mean "none".
    pub fn from_resources(resources: Option<&LinuxResources>) -> Self {
        let positive = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).filter(|&v| v > 0);
        let cpu = resources.and_then(|r| r.cpu().as_ref());
        let memory = resources.and_then(|r| r.memory().as_ref());
        let period = cpu
            .and_then(|c| c.period())
            .filter(|&p| p > 0)
            .unwrap_or(DEFAULT_CFS_PERIOD_US);
        Self {
            cpu_limit_millis: positive(cpu.and_then(|c| c.quota()))
                .map(|quota| (quota * 1000).div_ceil(period)),
            cpu_request_millis: cpu
                .and_then(|c| c.shares())
                .filter(|&s| s > 0)
                .map(|shares| shares * 1000 / 1024),
            memory_limit: positive(memory.and_then(|m| m.limit())),
            memory_reservation: positive(memory.and_then(|m| m.reservation())),
        }
    }

    /// The quota of a spec's `linux.resources`.
    pub fn from_spec(spec: &Spec) -> Self {
        Self::from_resources(spec.linux().as_ref().and_then(|l| l.resources().as_ref()))
    }

    /// Refuses a quota that asks for more than the node can give one container.
    pub fn check(&self, id: &str, profile: &NodeProfile) -> Result<(), PlanError> {
        let allocatable = profile.allocatable();
        let refuse = |what: &'static str, asked: String, have: String| PlanError::OverCapacity {
            id: id.to_owned(),
            what,
            asked,
            allocatable: have,
            profile: format!("capacity {}, reserve {}", profile.capacity, profile.reserve),
        };
        let cpu_have = allocatable.cpu_millis;
        for (what, asked) in [
            ("a CPU limit", self.cpu_limit_millis),
            ("a CPU request", self.cpu_request_millis),
        ] {
            if let Some(asked) = asked.filter(|&a| a > cpu_have) {
                return Err(refuse(what, cpu_text(asked), cpu_text(cpu_have)));
            }
        }
        let memory_have = allocatable.memory_bytes;
        for (what, asked) in [
            ("a memory limit", self.memory_limit),
            ("a memory reservation", self.memory_reservation),
        ] {
            if let Some(asked) = asked.filter(|&a| a > memory_have) {
                return Err(refuse(what, bytes_text(asked), bytes_text(memory_have)));
            }
        }
        Ok(())
    }
}

/// Checks the spec's resources against the node and writes the profile's default limits
/// into a spec that sets none. Returns what was defaulted (e.g. `CPU 1`), for the
/// log; empty if nothing.
pub fn admit(id: &str, spec: &mut Spec, profile: &NodeProfile) -> Result<Vec<String>, PlanError> {
    let quota = CgroupQuota::from_spec(spec);
    quota.check(id, profile)?;
    let mut defaulted = Vec::new();
    let Some(linux) = spec.linux_mut() else {
        // Not a Linux container spec: there is no cgroup to put limits on.
        return Ok(defaulted);
    };
    let mut resources = linux.resources().clone().unwrap_or_else(|| {
        LinuxResourcesBuilder::default()
            .build()
            .expect("empty resources are valid")
    });
    if quota.cpu_limit_millis.is_none() {
        let mut cpu = resources.cpu().clone().unwrap_or_else(|| {
            LinuxCpuBuilder::default()
                .build()
                .expect("empty cpu is valid")
        });
        let period = cpu
            .period()
            .filter(|&p| p > 0)
            .unwrap_or(DEFAULT_CFS_PERIOD_US);
        let quota = profile.defaults.cpu_millis * period / 1000;
        cpu.set_period(Some(period));
        cpu.set_quota(i64::try_from(quota).ok());
        resources.set_cpu(Some(cpu));
        defaulted.push(format!("CPU {}", cpu_text(profile.defaults.cpu_millis)));
    }
    if quota.memory_limit.is_none() {
        let mut memory = (*resources.memory()).unwrap_or_else(|| {
            LinuxMemoryBuilder::default()
                .build()
                .expect("empty memory is valid")
        });
        memory.set_limit(i64::try_from(profile.defaults.memory_bytes).ok());
        resources.set_memory(Some(memory));
        defaulted.push(format!(
            "memory {}",
            bytes_text(profile.defaults.memory_bytes)
        ));
    }
    if !defaulted.is_empty() {
        linux.set_resources(Some(resources));
    }
    Ok(defaulted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, SpecBuilder};

    fn spec_with(resources: LinuxResources) -> Spec {
        SpecBuilder::default()
            .linux(
                LinuxBuilder::default()
                    .resources(resources)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    fn resources(quota: i64, period: u64, shares: u64, memory: i64) -> LinuxResources {
        LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(quota)
                    .period(period)
                    .shares(shares)
                    .build()
                    .unwrap(),
            )
            .memory(LinuxMemoryBuilder::default().limit(memory).build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn seed_deployment_fits_and_keeps_its_limits() {
        // limits 1 CPU / 1Gi, requests 200m as kubelet writes them.
        let mut spec = spec_with(resources(100_000, 100_000, 204, 1 << 30));
        let quota = CgroupQuota::from_spec(&spec);
        assert_eq!(quota.cpu_limit_millis, Some(1000));
        assert_eq!(quota.cpu_request_millis, Some(199));
        assert_eq!(quota.memory_limit, Some(1 << 30));
        let defaulted = admit("seed", &mut spec, &NodeProfile::default()).unwrap();
        assert!(defaulted.is_empty(), "{defaulted:?}");
        assert_eq!(CgroupQuota::from_spec(&spec), quota);
    }

    #[test]
    fn unlimited_container_gets_the_profile_defaults() {
        let mut spec = spec_with(resources(-1, 0, 1024, 0));
        let defaulted = admit("c1", &mut spec, &NodeProfile::default()).unwrap();
        assert_eq!(defaulted, vec!["CPU 1", "memory 256 MiB"]);
        let cpu = spec
            .linux()
            .as_ref()
            .unwrap()
            .resources()
            .as_ref()
            .unwrap()
            .cpu()
            .clone()
            .unwrap();
        assert_eq!(cpu.quota(), Some(100_000));
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.shares(), Some(1024));
        assert_eq!(CgroupQuota::from_spec(&spec).memory_limit, Some(256 << 20));

        // No resources at all.
        let mut bare = SpecBuilder::default()
            .linux(LinuxBuilder::default().build().unwrap())
            .build()
            .unwrap();
        assert_eq!(
            admit("c2", &mut bare, &NodeProfile::default())
                .unwrap()
                .len(),
            2
        );
        assert_eq!(CgroupQuota::from_spec(&bare).cpu_limit_millis, Some(1000));
    }

    #[test]
    fn over_capacity_is_refused_with_the_numbers() {
        let profile = NodeProfile::default();
        let mut big_memory = spec_with(resources(100_000, 100_000, 1024, 16 << 30));
        assert_eq!(
            admit("big", &mut big_memory, &profile)
                .unwrap_err()
                .to_string(),
            "container big: asks for a memory limit of 16 GiB, more than this node can give a \
             container: 7.5 GiB allocatable (node profile: capacity 4 CPU / 8 GiB, reserve \
             250m CPU / 512 MiB)"
        );
        let mut many_cpus = spec_with(resources(600_000, 100_000, 1024, 1 << 30));
        let err = admit("wide", &mut many_cpus, &profile)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a CPU limit of 6, more than"), "{err}");
        assert!(err.contains("3750m allocatable"), "{err}");
        let mut requests = spec_with(resources(-1, 0, 5 * 1024, 0));
        let err = admit("req", &mut requests, &profile)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a CPU request of 5, more than"), "{err}");
    }
}
