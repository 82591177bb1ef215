//! `containerd-shim-triage-v1 cache ls|prune [MAX_BYTES]`: the operator's view of the
//! node's artifact cache (the node profile's `[wasm] cache`, else `$TRIAGE_CACHE_DIR`,
//! else `/var/lib/triage/cache`).

use anyhow::{bail, Context};
use triage_runtime::engine::cache::ArtifactCache;

/// Runs the subcommand; `args` follow `cache`.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let profile = crate::profile::load()?;
    let settings = crate::profile::cache_settings(&profile);
    let Some(dir) = settings.dir else {
        bail!(
            "the artifact cache is off (node profile {} or TRIAGE_CACHE_DIR=off)",
            crate::profile::path().display()
        );
    };
    let cache = ArtifactCache::open(&dir, settings.max_bytes)?;
    match args.first().map(String::as_str) {
        Some("ls") | None => {
            let entries = cache.entries()?;
            let total: u64 = entries.iter().map(|e| e.bytes).sum();
            println!("{:<64} {:>10}  last used", "entry", "bytes");
            for entry in &entries {
                let age = entry.last_used.elapsed().map(|d| d.as_secs()).unwrap_or(0);
                println!("{:<64} {:>10}  {age} s ago", entry.name, entry.bytes);
            }
            println!(
                "{} entries, {total} bytes in {}",
                entries.len(),
                dir.display()
            );
        }
        Some("prune") => {
            let keep: u64 = match args.get(1) {
                Some(n) => n
                    .parse()
                    .with_context(|| format!("{n:?} is not a byte count"))?,
                None => 0,
            };
            let removed = cache.prune(keep)?;
            let freed: u64 = removed.iter().map(|e| e.bytes).sum();
            println!(
                "removed {} entries ({freed} bytes); at most {keep} bytes kept in {}",
                removed.len(),
                dir.display()
            );
        }
        Some(other) => bail!("unknown cache command {other:?} (expected ls or prune [MAX_BYTES])"),
    }
    Ok(())
}
