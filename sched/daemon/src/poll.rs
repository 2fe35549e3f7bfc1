//! Asking the nodes what runs on them, side by side and with a deadline.
//!
//! A node's hypervisor can take minutes to fail (a TCP connection to a host that died waits for
//! the kernel to give up), so the nodes are listed by a few worker threads at once, and a round
//! waits at most a deadline: a node whose listing is not over by then (and began at least half a
//! deadline ago) is reported silent, and is not asked again until that listing returns. Its
//! answer, when it comes, is reported in the round it arrives in, with the time its listing
//! began: a slow node counts as alive, and what it reported is dated. A node still waiting for a
//! free worker is left out of the round (neither up nor down), so that a few hung nodes occupying
//! every worker never make healthy ones look dead.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use vjob_hypervisor::{DomainInfo, HvError, Hypervisor};

use super::{NodeAnswer, NodeReport, Observation};
use crate::exec::Backends;

/// A node's VMs and its boot id (read after the listing: a reboot in between shows as a new
/// boot, so a VM missing from the listing is never taken to have vanished from the same boot).
type Listing = Result<(Vec<DomainInfo>, Option<String>), String>;

/// Lists node `b`'s VMs, then reads its boot id (see [`Listing`] for the order).
pub(crate) fn list_with_boot_id(b: &dyn Hypervisor) -> Result<(Vec<DomainInfo>, Option<String>), HvError> {
    let domains = b.list()?;
    Ok((domains, b.boot_id()?))
}

/// The workers and what they are doing.
pub struct Poller {
    requests: Sender<String>,
    results: Receiver<(String, Instant, Listing)>,
    /// Nodes asked and not answered yet.
    asked: HashMap<String, Instant>,
    /// Nodes a worker is listing now, with when it began.
    listing: Arc<Mutex<HashMap<String, Instant>>>,
    deadline: Duration,
    image_dir: PathBuf,
}

impl Poller {
    /// Starts `workers` threads; a round waits at most `deadline` for a node, then lists the
    /// saved images in `image_dir`.
    pub fn start(backends: Backends, workers: usize, deadline: Duration, image_dir: PathBuf) -> Poller {
        let (requests, jobs) = crossbeam_channel::unbounded::<String>();
        let (answers, results) = crossbeam_channel::unbounded();
        let listing: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        for i in 0..workers.max(1) {
            let (jobs, answers, backends, listing) = (jobs.clone(), answers.clone(), backends.clone(), listing.clone());
            std::thread::Builder::new()
                .name(format!("poll-{i}"))
                .spawn(move || {
                    for node in jobs {
                        let began = Instant::now();
                        lock(&listing).insert(node.clone(), began);
                        let r = match backends.get(&node) {
                            Some(b) => list_with_boot_id(b.as_ref()).map_err(|e| e.to_string()),
                            None => Err(format!("no connection to node {node}")),
                        };
                        lock(&listing).remove(&node);
                        if answers.send((node, began, r)).is_err() {
                            return;
                        }
                    }
                })
                .expect("spawn a polling thread");
        }
        Poller {
            requests,
            results,
            asked: HashMap::new(),
            listing,
            deadline,
            image_dir,
        }
    }

    /// One round over `names`.
    pub fn round(&mut self, names: &[String]) -> Observation {
        let start = Instant::now();
        for n in names {
            if !self.asked.contains_key(n) {
                self.asked.insert(n.clone(), start);
                let _ = self.requests.send(n.clone());
            }
        }
        let mut nodes = Vec::with_capacity(names.len());
        let end = start + self.deadline;
        // Answers to earlier rounds that came in since are taken too, each with its own date.
        while !self.asked.is_empty() {
            let Ok((node, began, listing)) = self.results.recv_timeout(end.saturating_duration_since(Instant::now()))
            else {
                break;
            };
            self.asked.remove(&node);
            let answer = match listing {
                Ok((domains, boot_id)) => NodeAnswer::Listed(domains, boot_id),
                Err(e) => NodeAnswer::Failed(e),
            };
            nodes.push(NodeReport { node, began, answer });
        }
        // Listings still going: silent for this round, unless a worker only just got to them.
        let listing = lock(&self.listing);
        for (node, since) in listing.iter() {
            if since.elapsed() >= self.deadline / 2 && self.asked.contains_key(node) {
                nodes.push(NodeReport {
                    node: node.clone(),
                    began: *since,
                    answer: NodeAnswer::Silent,
                });
            }
        }
        drop(listing);
        let started = nodes.iter().map(|r| r.began).min().unwrap_or(start).min(start);
        Observation {
            started,
            nodes,
            images: list_images(&self.image_dir),
        }
    }
}

/// The names of the files in the image directory (none when it does not exist yet).
fn list_images(dir: &Path) -> Option<HashSet<String>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Some(
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(HashSet::new()),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list the saved images");
            None
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps stay consistent across a panic (single inserts and removes).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vjob_hypervisor::{HvError, Hypervisor, NodeStats, VmSpec};

    /// A node that answers after `delay`.
    struct Slow {
        name: String,
        delay: Duration,
    }

    impl Hypervisor for Slow {
        fn node(&self) -> &str {
            &self.name
        }
        fn migration_target(&self) -> String {
            self.name.clone()
        }
        fn start(&self, _: &VmSpec, _: bool) -> Result<(), HvError> {
            unimplemented!("only listed")
        }
        fn pause(&self, _: &str) -> Result<(), HvError> {
            unimplemented!("only listed")
        }
        fn unpause(&self, _: &str) -> Result<(), HvError> {
            unimplemented!("only listed")
        }
        fn save(&self, _: &str, _: &Path) -> Result<(), HvError> {
            unimplemented!("only listed")
        }
        fn restore(&self, _: &Path, _: bool) -> Result<String, HvError> {
            unimplemented!("only listed")
        }
        fn migrate(&self, _: &str, _: &str) -> Result<(), HvError> {
            unimplemented!("only listed")
        }
        fn destroy(&self, _: &str) -> Result<(), HvError> {
            unimplemented!("only listed")
        }
        fn list(&self) -> Result<Vec<DomainInfo>, HvError> {
            std::thread::sleep(self.delay);
            Ok(Vec::new())
        }
        fn stats(&self) -> Result<NodeStats, HvError> {
            unimplemented!("only listed")
        }
        fn console_log(&self, _: &str) -> Option<PathBuf> {
            None
        }
    }

    fn backends(nodes: &[(&str, u64)]) -> Backends {
        let map: HashMap<String, Arc<dyn Hypervisor>> = nodes
            .iter()
            .map(|&(n, ms)| {
                let h: Arc<dyn Hypervisor> = Arc::new(Slow {
                    name: n.into(),
                    delay: Duration::from_millis(ms),
                });
                (n.to_string(), h)
            })
            .collect();
        Arc::new(map)
    }

    fn answer<'a>(obs: &'a Observation, node: &str) -> Option<&'a NodeAnswer> {
        obs.nodes.iter().find(|r| r.node == node).map(|r| &r.answer)
    }

    #[test]
    fn a_hung_node_holds_up_neither_the_others_nor_the_round() {
        let names: Vec<String> = ["a", "hung", "b"].map(String::from).to_vec();
        let mut p = Poller::start(
            backends(&[("a", 0), ("hung", 60_000), ("b", 0)]),
            3,
            Duration::from_millis(300),
            PathBuf::from("/nonexistent"),
        );
        let t = Instant::now();
        let obs = p.round(&names);
        assert!(t.elapsed() < Duration::from_secs(2), "the round ends at its deadline");
        assert!(matches!(answer(&obs, "a"), Some(NodeAnswer::Listed(v, _)) if v.is_empty()));
        assert!(matches!(answer(&obs, "b"), Some(NodeAnswer::Listed(..))));
        assert!(matches!(answer(&obs, "hung"), Some(NodeAnswer::Silent)));
        // Not asked twice while its listing hangs; still reported.
        let obs = p.round(&names);
        assert!(matches!(answer(&obs, "hung"), Some(NodeAnswer::Silent)));
        assert!(matches!(answer(&obs, "a"), Some(NodeAnswer::Listed(..))));
    }

    #[test]
    fn nodes_waiting_for_a_worker_are_left_out_not_reported_down() {
        let names: Vec<String> = ["hung", "a"].map(String::from).to_vec();
        let mut p = Poller::start(
            backends(&[("hung", 60_000), ("a", 0)]),
            1,
            Duration::from_millis(200),
            PathBuf::from("/nonexistent"),
        );
        let obs = p.round(&names);
        assert!(matches!(answer(&obs, "hung"), Some(NodeAnswer::Silent)));
        assert!(answer(&obs, "a").is_none(), "no worker got to it: neither up nor down");
    }

    #[test]
    fn a_slow_answer_counts_in_a_later_round_with_the_time_its_listing_began() {
        let names: Vec<String> = ["slow", "a"].map(String::from).to_vec();
        let mut p = Poller::start(
            backends(&[("slow", 700), ("a", 0)]),
            2,
            Duration::from_millis(400),
            PathBuf::from("/nonexistent"),
        );
        let first = p.round(&names);
        assert!(matches!(answer(&first, "slow"), Some(NodeAnswer::Silent)));
        // A later round that lasts long enough gets the slow node's answer, dated.
        let mut late = None;
        for _ in 0..10 {
            let obs = p.round(&names);
            if let Some(r) = obs
                .nodes
                .iter()
                .find(|r| r.node == "slow" && matches!(r.answer, NodeAnswer::Listed(..)))
            {
                late = Some((r.began, obs.started));
                break;
            }
        }
        let (began, started) = late.expect("the slow answer is reported, not thrown away");
        assert!(began <= started, "the round is dated by its oldest listing");
        assert!(
            began < Instant::now() - Duration::from_millis(600),
            "dated when its listing began"
        );
    }
}
