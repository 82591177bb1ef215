//! Stats: the container's cgroup usage as containerd's v1 or v2 metrics (`ctr task metrics`).

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{MessageDyn, MessageField};
use triage_runtime::cgroup_procs::{container_usage, CgroupUsage, CgroupV1Usage, CgroupV2Usage};

use super::{TaskError, TaskService};

impl TaskService {
    pub(super) fn task_stats(
        &self,
        req: &api::StatsRequest,
    ) -> Result<api::StatsResponse, TaskError> {
        let container = self.container(&req.id)?;
        let pid = container.lock().pid;
        let usage = container_usage(pid).ok_or_else(|| {
            TaskError::FailedPrecondition(format!(
                "container {}: no cgroup to read for process {pid} (has the task exited?)",
                req.id
            ))
        })?;
        let metrics: Box<dyn MessageDyn> = match usage {
            CgroupUsage::V1(usage) => Box::new(v1_metrics(usage)),
            CgroupUsage::V2(usage) => Box::new(v2_metrics(&usage)),
        };
        let mut stats = Any::new();
        stats.type_url = metrics.descriptor_dyn().full_name().to_owned();
        stats.value = metrics.write_to_bytes_dyn().map_err(|e| {
            TaskError::Internal(format!("container {}: encoding metrics: {e}", req.id))
        })?;
        Ok(api::StatsResponse {
            stats: MessageField::some(stats),
            ..Default::default()
        })
    }
}

/// `io.containerd.cgroups.v1.Metrics`.
fn v1_metrics(usage: CgroupV1Usage) -> containerd_shim_protos::cgroups::metrics::Metrics {
    use containerd_shim_protos::cgroups::metrics::{
        CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat,
    };
    Metrics {
        memory: MessageField::some(MemoryStat {
            cache: usage.memory_cache,
            rss: usage.memory_rss,
            usage: MessageField::some(MemoryEntry {
                limit: usage.memory_limit,
                usage: usage.memory_usage,
                max: usage.memory_max,
                ..Default::default()
            }),
            ..Default::default()
        }),
        cpu: MessageField::some(CPUStat {
            usage: MessageField::some(CPUUsage {
                total: usage.cpu_total_ns,
                per_cpu: usage.cpu_per_cpu_ns,
                ..Default::default()
            }),
            ..Default::default()
        }),
        pids: MessageField::some(PidsStat {
            current: usage.pids_current,
            limit: usage.pids_limit,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `io.containerd.cgroups.v2.Metrics`.
fn v2_metrics(usage: &CgroupV2Usage) -> containerd_shim_protos::cgroups_v2::metrics::Metrics {
    use containerd_shim_protos::cgroups_v2::metrics::{
        CPUStat, MemoryEvents, MemoryStat, Metrics, PidsStat,
    };
    let memory = |key: &str| usage.memory_stat.get(key).copied().unwrap_or(0);
    let cpu = |key: &str| usage.cpu_stat.get(key).copied().unwrap_or(0);
    let event = |key: &str| usage.memory_events.get(key).copied().unwrap_or(0);
    Metrics {
        pids: MessageField::some(PidsStat {
            current: usage.pids_current,
            limit: usage.pids_max,
            ..Default::default()
        }),
        cpu: MessageField::some(CPUStat {
            usage_usec: cpu("usage_usec"),
            user_usec: cpu("user_usec"),
            system_usec: cpu("system_usec"),
            nr_periods: cpu("nr_periods"),
            nr_throttled: cpu("nr_throttled"),
            throttled_usec: cpu("throttled_usec"),
            ..Default::default()
        }),
        memory: MessageField::some(MemoryStat {
            anon: memory("anon"),
            file: memory("file"),
            kernel_stack: memory("kernel_stack"),
            slab: memory("slab"),
            sock: memory("sock"),
            shmem: memory("shmem"),
            file_mapped: memory("file_mapped"),
            file_dirty: memory("file_dirty"),
            file_writeback: memory("file_writeback"),
            anon_thp: memory("anon_thp"),
            inactive_anon: memory("inactive_anon"),
            active_anon: memory("active_anon"),
            inactive_file: memory("inactive_file"),
            active_file: memory("active_file"),
            unevictable: memory("unevictable"),
            slab_reclaimable: memory("slab_reclaimable"),
            slab_unreclaimable: memory("slab_unreclaimable"),
            pgfault: memory("pgfault"),
            pgmajfault: memory("pgmajfault"),
            usage: usage.memory_current,
            usage_limit: usage.memory_max,
            max_usage: usage.memory_peak,
            swap_usage: usage.swap_current,
            swap_limit: usage.swap_max,
            ..Default::default()
        }),
        memory_events: MessageField::some(MemoryEvents {
            low: event("low"),
            high: event("high"),
            max: event("max"),
            oom: event("oom"),
            oom_kill: event("oom_kill"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_metrics_carry_the_unified_files_and_containerds_type_name() {
        let usage = CgroupV2Usage {
            memory_current: 5 << 20,
            memory_max: 64 << 20,
            memory_stat: [("anon".to_owned(), 4 << 20), ("pgfault".to_owned(), 900)].into(),
            memory_events: [("oom_kill".to_owned(), 1)].into(),
            cpu_stat: [
                ("usage_usec".to_owned(), 1500),
                ("nr_throttled".to_owned(), 4),
            ]
            .into(),
            pids_current: 3,
            pids_max: 64,
            ..Default::default()
        };
        let metrics = v2_metrics(&usage);
        assert_eq!(
            metrics.descriptor_dyn().full_name(),
            "io.containerd.cgroups.v2.Metrics"
        );
        assert_eq!(metrics.memory.usage, 5 << 20);
        assert_eq!(metrics.memory.usage_limit, 64 << 20);
        assert_eq!(metrics.memory.anon, 4 << 20);
        assert_eq!(metrics.memory.pgfault, 900);
        assert_eq!(metrics.memory_events.oom_kill, 1);
        assert_eq!(metrics.cpu.usage_usec, 1500);
        assert_eq!(metrics.cpu.nr_throttled, 4);
        assert_eq!((metrics.pids.current, metrics.pids.limit), (3, 64));
        assert_eq!(
            v1_metrics(CgroupV1Usage::default())
                .descriptor_dyn()
                .full_name(),
            "io.containerd.cgroups.v1.Metrics"
        );
    }
}
