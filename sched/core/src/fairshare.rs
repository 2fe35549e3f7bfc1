//! Fair share and multifactor priority, as Slurm's classic fair-share and `priority/multifactor`
//! compute them; pure (time is a parameter), so vjobd and vsim rank vjobs the same way.
//!
//! - **Usage** is counted in core-seconds of running VMs and decays with a half-life: usage
//!   from one half-life ago counts half.
//! - **Shares** form a tree: accounts with shares hold users (and accounts) with shares; a user
//!   no account names sits under the root with the default shares. A user's normalized shares
//!   are the product, down its path, of each node's shares over its siblings'.
//! - **The fair-share factor** is F = 2^(-U/S): U the user's effective usage (its normalized
//!   usage, pulled toward its account's by its share of the account, as Slurm's classic
//!   algorithm does), S its normalized shares. 1 for a user with no usage, 0.5 for one whose
//!   usage matches its shares, toward 0 above them.
//! - **A vjob's priority** is the weighted sum of its factors: queue priority and job priority
//!   (as given), age (time waiting over `max_age`, at most 1), fair share, and size (its vcpus
//!   over the cluster's).

use std::collections::BTreeMap;

/// The shares tree, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Shares {
    /// Accounts: name -> (shares, parent account; `None`: under the root).
    pub accounts: BTreeMap<String, (f64, Option<String>)>,
    /// Users: name -> (shares, account; `None`: under the root).
    pub users: BTreeMap<String, (f64, Option<String>)>,
    /// Shares of a user the configuration does not name (under the root).
    pub default_shares: f64,
}

impl Default for Shares {
    fn default() -> Shares {
        Shares {
            accounts: BTreeMap::new(),
            users: BTreeMap::new(),
            default_shares: 1.0,
        }
    }
}

/// Where a user stands: what `vstat --shares` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct UserShare {
    pub user: String,
    /// Its accounts, from the root down (empty: under the root).
    pub path: Vec<String>,
    pub shares_raw: f64,
    pub shares_norm: f64,
    /// Decayed core-seconds.
    pub usage_raw: f64,
    pub usage_norm: f64,
    pub usage_effective: f64,
    pub factor: f64,
}

/// Decayed usage per user.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Core-seconds per user, decayed to `at_ms`.
    pub users: BTreeMap<String, f64>,
    /// `None`: never advanced.
    pub at_ms: Option<u64>,
}

impl Usage {
    /// Moves to `now_ms`: decays what was, then adds `running` (user, cores) for the time since,
    /// as if they ran through it (callers advance at every change, so that is what ran).
    pub fn advance<'a>(&mut self, now_ms: u64, half_life_ms: u64, running: impl Iterator<Item = (&'a str, u64)>) {
        let Some(at) = self.at_ms.filter(|&at| at <= now_ms) else {
            self.at_ms = Some(now_ms);
            return;
        };
        let dt = now_ms - at;
        if dt == 0 {
            return;
        }
        let decay = 0.5f64.powf(dt as f64 / half_life_ms.max(1) as f64);
        for u in self.users.values_mut() {
            *u *= decay;
        }
        // What ran through the interval decays too, by half of it on average.
        let mid = 0.5f64.powf(dt as f64 / 2.0 / half_life_ms.max(1) as f64);
        for (user, cores) in running {
            *self.users.entry(user.to_string()).or_default() += cores as f64 * dt as f64 / 1000.0 * mid;
        }
        self.at_ms = Some(now_ms);
    }
}

impl Shares {
    /// A user's accounts, from the root down.
    fn path(&self, user: &str) -> Vec<String> {
        let mut path = Vec::new();
        let mut at = self.users.get(user).and_then(|(_, a)| a.clone());
        while let Some(a) = at {
            // A cycle is refused when the configuration is read; stop anyway.
            if path.contains(&a) {
                break;
            }
            at = self.accounts.get(&a).and_then(|(_, p)| p.clone());
            path.push(a);
        }
        path.reverse();
        path
    }

    fn user_shares(&self, user: &str) -> f64 {
        self.users.get(user).map_or(self.default_shares, |(s, _)| *s)
    }

    /// Every user's standing, given the usage, for the users configured and `also` (those with
    /// jobs or usage).
    pub fn standing<'a>(&self, usage: &Usage, also: impl Iterator<Item = &'a str>) -> Vec<UserShare> {
        let mut users: Vec<String> = self.users.keys().cloned().collect();
        users.extend(also.map(str::to_string));
        users.extend(usage.users.keys().cloned());
        users.sort();
        users.dedup();
        // Each node of the tree: its parent (None: the root), shares, usage.
        #[derive(Default, Clone)]
        struct Node {
            parent: Option<String>,
            shares: f64,
            usage: f64,
        }
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        for (a, (s, p)) in &self.accounts {
            nodes.insert(
                format!("a:{a}"),
                Node {
                    parent: p.as_ref().map(|p| format!("a:{p}")),
                    shares: *s,
                    usage: 0.0,
                },
            );
        }
        let total: f64 = users.iter().map(|u| usage.users.get(u).copied().unwrap_or(0.0)).sum();
        for u in &users {
            let used = usage.users.get(u).copied().unwrap_or(0.0);
            let account = self.users.get(u).and_then(|(_, a)| a.clone());
            nodes.insert(
                format!("u:{u}"),
                Node {
                    parent: account.map(|a| format!("a:{a}")),
                    shares: self.user_shares(u),
                    usage: used,
                },
            );
            for a in self.path(u) {
                if let Some(n) = nodes.get_mut(&format!("a:{a}")) {
                    n.usage += used;
                }
            }
        }
        let siblings_shares = |parent: &Option<String>| -> f64 {
            nodes
                .values()
                .filter(|n| &n.parent == parent)
                .map(|n| n.shares)
                .sum::<f64>()
        };
        let norm = |x: f64| if total > 0.0 { x / total } else { 0.0 };
        users
            .iter()
            .map(|u| {
                let path = self.path(u);
                let mut keys: Vec<String> = path.iter().map(|a| format!("a:{a}")).collect();
                keys.push(format!("u:{u}"));
                let (mut shares_norm, mut effective) = (1.0, 0.0);
                for (depth, k) in keys.iter().enumerate() {
                    let n = &nodes[k];
                    let local = n.shares / siblings_shares(&n.parent).max(f64::MIN_POSITIVE);
                    shares_norm *= local;
                    let own = norm(n.usage);
                    // Slurm's classic effective usage: the node's own, pulled toward its
                    // parent's by its share among its siblings (under the root: its own).
                    effective = match depth {
                        0 => own,
                        _ => own + (effective - own) * local,
                    };
                }
                let factor = match shares_norm > 0.0 {
                    true => 2f64.powf(-effective / shares_norm),
                    false => 0.0,
                };
                UserShare {
                    user: u.clone(),
                    path,
                    shares_raw: self.user_shares(u),
                    shares_norm,
                    usage_raw: usage.users.get(u).copied().unwrap_or(0.0),
                    usage_norm: norm(usage.users.get(u).copied().unwrap_or(0.0)),
                    usage_effective: effective,
                    factor,
                }
            })
            .collect()
    }
}

/// The weights of the priority's factors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Per unit of queue priority, and of job priority.
    pub queue: f64,
    pub job: f64,
    /// For waiting `max_age_ms` or longer.
    pub age: f64,
    pub max_age_ms: u64,
    /// For a fair-share factor of 1.
    pub fairshare: f64,
    /// For a vjob as large as the cluster.
    pub size: f64,
}

impl Default for Weights {
    fn default() -> Weights {
        Weights {
            queue: 0.0,
            job: 1.0,
            age: 1000.0,
            max_age_ms: 7 * 86_400_000,
            fairshare: 10_000.0,
            size: 0.0,
        }
    }
}

/// A vjob's factors and the priority they make.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Factors {
    pub queue: f64,
    pub job: f64,
    /// 0 to 1.
    pub age: f64,
    pub fairshare: f64,
    pub size: f64,
}

impl Factors {
    /// The factors of a vjob of queue priority `queue`, job priority `job`, waiting for
    /// `waited_ms`, of a user of fair-share factor `fairshare`, and `vcpus` of the cluster's
    /// `cluster_vcpus`.
    pub fn of(
        w: &Weights,
        queue: i32,
        job: i32,
        waited_ms: u64,
        fairshare: f64,
        vcpus: u64,
        cluster_vcpus: u64,
    ) -> Factors {
        Factors {
            queue: queue as f64,
            job: job as f64,
            age: (waited_ms as f64 / w.max_age_ms.max(1) as f64).min(1.0),
            fairshare,
            size: vcpus as f64 / cluster_vcpus.max(1) as f64,
        }
    }

    /// The weighted sum, rounded: the vjob's rank among those of its queue priority.
    pub fn priority(&self, w: &Weights) -> i64 {
        (w.queue * self.queue + w.job * self.job + w.age * self.age + w.fairshare * self.fairshare + w.size * self.size)
            .round() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_decays_by_half_each_half_life_and_counts_what_ran() {
        let mut u = Usage::default();
        u.advance(1_000, 10_000, std::iter::empty());
        u.advance(11_000, 10_000, [("a", 2)].into_iter());
        // 2 cores for 10 s, decayed on average by half a half-life.
        let a = u.users["a"];
        assert!((a - 20.0 * 0.5f64.powf(0.5)).abs() < 1e-9, "{a}");
        u.advance(21_000, 10_000, std::iter::empty());
        assert!((u.users["a"] - a / 2.0).abs() < 1e-9);
    }

    #[test]
    fn the_factor_is_one_without_usage_half_at_the_shares_and_lower_above() {
        let shares = Shares::default();
        let mut usage = Usage::default();
        let s = shares.standing(&usage, ["a", "b"].into_iter());
        assert!(s.iter().all(|u| u.factor == 1.0 && (u.shares_norm - 0.5).abs() < 1e-12));
        usage.users.insert("a".into(), 50.0);
        usage.users.insert("b".into(), 50.0);
        let s = shares.standing(&usage, std::iter::empty());
        assert!(s.iter().all(|u| (u.factor - 0.5).abs() < 1e-12), "{s:?}");
        usage.users.insert("a".into(), 100.0);
        usage.users.insert("b".into(), 0.0);
        let s = shares.standing(&usage, std::iter::empty());
        assert!((s[0].factor - 0.25).abs() < 1e-12 && s[1].factor == 1.0, "{s:?}");
    }

    #[test]
    fn accounts_split_their_shares_and_pull_their_users_usage_together() {
        // physics (3 shares: alice 1, bob 1) and bio (1 share: carol).
        let shares = Shares {
            accounts: [("physics".into(), (3.0, None)), ("bio".into(), (1.0, None))].into(),
            users: [
                ("alice".into(), (1.0, Some("physics".into()))),
                ("bob".into(), (1.0, Some("physics".into()))),
                ("carol".into(), (1.0, Some("bio".into()))),
            ]
            .into(),
            default_shares: 1.0,
        };
        let mut usage = Usage::default();
        let s = shares.standing(&usage, std::iter::empty());
        let norm: Vec<f64> = s.iter().map(|u| u.shares_norm).collect();
        assert_eq!(norm, vec![0.375, 0.375, 0.25], "alice, bob, carol");
        assert_eq!(s[0].path, vec!["physics".to_string()]);
        // alice used everything: bob, in her account, is pulled down with her, carol is not.
        usage.users.insert("alice".into(), 10.0);
        let s = shares.standing(&usage, std::iter::empty());
        let (alice, bob, carol) = (&s[0], &s[1], &s[2]);
        assert!(
            alice.factor < bob.factor && bob.factor < 1.0 && carol.factor == 1.0,
            "{s:?}"
        );
        assert!((bob.usage_effective - 0.5).abs() < 1e-12, "{bob:?}");
    }

    #[test]
    fn the_priority_is_the_weighted_sum_of_the_factors() {
        let w = Weights::default();
        let f = Factors::of(&w, 10, 3, 7 * 86_400_000 / 2, 0.5, 4, 16);
        assert_eq!((f.age, f.size), (0.5, 0.25));
        assert_eq!(f.priority(&w), 3 + 500 + 5000);
        let f = Factors::of(&w, 10, 0, u64::MAX, 0.0, 0, 0);
        assert_eq!(f.age, 1.0);
    }
}

/// How vjobs are ranked: the weights, how often priorities are computed again, and fair share
/// if configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    pub weights: Weights,
    /// Priorities are computed again this often (usage and age change all the time).
    pub recalc_ms: u64,
    /// `(half-life, shares)`; `None`: every user's fair-share factor is 1.
    pub fairshare: Option<(u64, Shares)>,
}

/// The `[priority]` table as written: read by vjobd's configuration.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityTable {
    weight_queue: Option<f64>,
    weight_job: Option<f64>,
    weight_age: Option<f64>,
    weight_fairshare: Option<f64>,
    weight_size: Option<f64>,
    max_age: Option<toml::Spanned<String>>,
    recalc: Option<toml::Spanned<String>>,
}

/// The `[fairshare]` table as written.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FairshareTable {
    half_life: Option<toml::Spanned<String>>,
    default_shares: Option<toml::Spanned<f64>>,
    /// User -> shares.
    #[serde(default)]
    users: BTreeMap<String, toml::Spanned<f64>>,
    #[serde(default, rename = "account")]
    accounts: Vec<AccountTable>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountTable {
    name: toml::Spanned<String>,
    shares: toml::Spanned<f64>,
    parent: Option<toml::Spanned<String>>,
    #[serde(default)]
    users: Vec<String>,
}

use crate::power::TableError;

fn at<T>(v: &toml::Spanned<T>, field: &str, message: impl Into<String>) -> TableError {
    TableError {
        span: Some(v.span()),
        field: field.into(),
        message: message.into(),
    }
}

fn duration(v: &Option<toml::Spanned<String>>, field: &str, default: u64) -> Result<u64, TableError> {
    match v {
        None => Ok(default),
        Some(s) => match vjob_api::units::parse_duration_ms(s.get_ref()) {
            Ok(0) => Err(at(s, field, "must be more than zero")),
            Ok(ms) => Ok(ms),
            Err(m) => Err(at(s, field, m)),
        },
    }
}

/// The ranking the two tables describe; `None` when neither is given (vjobs are then ordered
/// by queue priority, job priority and submission alone).
pub fn ranking(
    priority: Option<&PriorityTable>,
    fairshare: Option<&FairshareTable>,
) -> Result<Option<Ranking>, TableError> {
    if priority.is_none() && fairshare.is_none() {
        return Ok(None);
    }
    let p = priority.cloned().unwrap_or_default();
    let d = Weights::default();
    let weights = Weights {
        queue: p.weight_queue.unwrap_or(d.queue),
        job: p.weight_job.unwrap_or(d.job),
        age: p.weight_age.unwrap_or(d.age),
        max_age_ms: duration(&p.max_age, "priority.max_age", d.max_age_ms)?,
        fairshare: p.weight_fairshare.unwrap_or(d.fairshare),
        size: p.weight_size.unwrap_or(d.size),
    };
    let all = [weights.queue, weights.job, weights.age, weights.fairshare, weights.size];
    if all.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(TableError {
            span: None,
            field: "priority".into(),
            message: "weights are numbers from 0 up".into(),
        });
    }
    let recalc_ms = duration(&p.recalc, "priority.recalc", 30_000)?;
    let fairshare = fairshare.map(shares).transpose()?;
    Ok(Some(Ranking {
        weights,
        recalc_ms,
        fairshare,
    }))
}

/// `[fairshare]`: the half-life and the shares tree, checked (positive shares, parents that
/// exist, no cycle, a user in one account at most).
fn shares(t: &FairshareTable) -> Result<(u64, Shares), TableError> {
    let half_life = duration(&t.half_life, "fairshare.half_life", 7 * 86_400_000)?;
    let positive = |v: &toml::Spanned<f64>, field: &str| match *v.get_ref() {
        s if s.is_finite() && s > 0.0 => Ok(s),
        _ => Err(at(v, field, "shares are a number above 0")),
    };
    let default_shares = match &t.default_shares {
        Some(v) => positive(v, "fairshare.default_shares")?,
        None => 1.0,
    };
    let mut out = Shares {
        default_shares,
        ..Default::default()
    };
    for a in &t.accounts {
        let name = a.name.get_ref().clone();
        let shares = positive(&a.shares, "fairshare.account.shares")?;
        if out
            .accounts
            .insert(name.clone(), (shares, a.parent.as_ref().map(|p| p.get_ref().clone())))
            .is_some()
        {
            return Err(at(
                &a.name,
                "fairshare.account.name",
                format!("account `{name}` is declared twice"),
            ));
        }
    }
    for a in &t.accounts {
        if let Some(p) = &a.parent {
            if !out.accounts.contains_key(p.get_ref()) {
                return Err(at(
                    p,
                    "fairshare.account.parent",
                    format!("no account named `{}`", p.get_ref()),
                ));
            }
        }
        // Walking up from each account must reach the root.
        let mut seen = vec![a.name.get_ref().clone()];
        let mut up = a.parent.as_ref().map(|p| p.get_ref().clone());
        while let Some(u) = up {
            if seen.contains(&u) {
                return Err(at(
                    &a.name,
                    "fairshare.account.parent",
                    format!("accounts form a cycle: {} -> {u}", seen.join(" -> ")),
                ));
            }
            seen.push(u.clone());
            up = out.accounts.get(&u).and_then(|(_, p)| p.clone());
        }
    }
    for (user, v) in &t.users {
        out.users.insert(user.clone(), (positive(v, "fairshare.users")?, None));
    }
    for a in &t.accounts {
        for u in &a.users {
            let entry = out.users.entry(u.clone()).or_insert((default_shares, None));
            if let Some(other) = &entry.1 {
                return Err(at(
                    &a.name,
                    "fairshare.account.users",
                    format!(
                        "user `{u}` is in accounts `{other}` and `{}`: one account per user",
                        a.name.get_ref()
                    ),
                ));
            }
            entry.1 = Some(a.name.get_ref().clone());
        }
    }
    Ok((half_life, out))
}

#[cfg(test)]
mod table_tests {
    use super::*;

    fn read(text: &str) -> Result<Option<Ranking>, TableError> {
        #[derive(serde::Deserialize)]
        struct File {
            priority: Option<PriorityTable>,
            fairshare: Option<FairshareTable>,
        }
        let f: File = toml::from_str(text).unwrap();
        ranking(f.priority.as_ref(), f.fairshare.as_ref())
    }

    #[test]
    fn tables_read_into_a_ranking_and_bad_trees_say_what_is_wrong() {
        assert_eq!(read("").unwrap(), None);
        let r = read(
            "[priority]\nweight_age = 5\nrecalc = \"1s\"\n[fairshare]\nhalf_life = \"1h\"\nusers = { alice = 2 }\n[[fairshare.account]]\nname = \"physics\"\nshares = 3\nusers = [\"alice\", \"bob\"]\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.weights.age, r.recalc_ms, r.weights.fairshare), (5.0, 1000, 10_000.0));
        let (hl, shares) = r.fairshare.unwrap();
        assert_eq!(hl, 3_600_000);
        assert_eq!(shares.users["alice"], (2.0, Some("physics".into())));
        assert_eq!(shares.users["bob"], (1.0, Some("physics".into())));
        for (text, says) in [
            ("[fairshare]\nusers = { a = 0 }\n", "above 0"),
            ("[fairshare]\n[[fairshare.account]]\nname = \"x\"\nshares = 1\nparent = \"y\"\n", "no account named `y`"),
            (
                "[fairshare]\n[[fairshare.account]]\nname = \"x\"\nshares = 1\nparent = \"y\"\n[[fairshare.account]]\nname = \"y\"\nshares = 1\nparent = \"x\"\n",
                "cycle",
            ),
            (
                "[fairshare]\n[[fairshare.account]]\nname = \"x\"\nshares = 1\nusers = [\"u\"]\n[[fairshare.account]]\nname = \"y\"\nshares = 1\nusers = [\"u\"]\n",
                "one account per user",
            ),
            ("[priority]\nrecalc = \"0s\"\n", "more than zero"),
            ("[priority]\nweight_age = -1\n", "from 0 up"),
        ] {
            let e = read(text).unwrap_err();
            assert!(e.message.contains(says), "{text}: {e:?}");
        }
    }
}
