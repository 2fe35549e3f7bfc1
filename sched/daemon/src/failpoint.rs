//! Failpoints: named places where a test can make vjobd fail on purpose, switched on by the
//! `VJOB_FAILPOINTS` environment variable in debug builds only; a release build compiles them to
//! nothing. The fault tests of the test suite use them to check that vjobd survives what they
//! cause.
//!
//! `VJOB_FAILPOINTS=name=action[@N],...`: at failpoint `name` (every time, or only the Nth time it
//! is reached), `panic` (the thread panics), `abort` (the process dies at once, as under
//! `kill -9`), `error` (the step fails with an injected error) or `sleep:MS` (the step hangs that
//! long, past its deadline if it is longer).
//!
//! The places: `core-submit` (a submission in the core loop), `store-commit` (before the store's
//! transaction), `request-commit` (before the commit of a batch of requests that changed
//! something), `exec-OP-before` and `exec-OP-after` around each hypervisor call of the executor
//! (`OP`: boot, restore, pause, unpause, save, migrate, destroy, remove-image, output, power;
//! `after` is once the call took effect and before its answer reaches the loop).

/// What a failpoint does when it is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Panic,
    Abort,
    Error,
    Sleep(u64),
}

/// An error a failpoint injected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failpoint {0}: injected error")]
pub struct Injected(pub String);

#[cfg(debug_assertions)]
fn hits() -> &'static std::sync::Mutex<std::collections::HashMap<String, u64>> {
    static HITS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, u64>>> =
        std::sync::OnceLock::new();
    HITS.get_or_init(Default::default)
}

/// The action the environment asks at failpoint `name` now, if any (counting this hit).
#[cfg(debug_assertions)]
pub fn action(name: &str) -> Option<Action> {
    let spec = std::env::var("VJOB_FAILPOINTS").ok()?;
    let (action, nth) = parse(&spec, name)?;
    let mut hits = hits().lock().unwrap_or_else(|p| p.into_inner());
    let count = hits.entry(name.to_string()).or_insert(0);
    *count += 1;
    nth.is_none_or(|n| n == *count).then_some(action)
}

#[cfg(not(debug_assertions))]
pub fn action(_name: &str) -> Option<Action> {
    None
}

/// Failpoint `name`: does what the environment asks there; `Err` when it asks for an error.
pub fn hit(name: &str) -> Result<(), Injected> {
    match action(name) {
        None => Ok(()),
        Some(Action::Panic) => panic!("failpoint {name}: panic"),
        Some(Action::Abort) => {
            eprintln!("failpoint {name}: abort");
            std::process::abort()
        }
        Some(Action::Error) => Err(Injected(name.to_string())),
        Some(Action::Sleep(ms)) => {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            Ok(())
        }
    }
}

#[cfg_attr(not(debug_assertions), allow(dead_code))]
fn parse(spec: &str, name: &str) -> Option<(Action, Option<u64>)> {
    spec.split(',').find_map(|item| {
        let (n, what) = item.trim().split_once('=')?;
        if n.trim() != name {
            return None;
        }
        let (what, nth) = match what.split_once('@') {
            Some((w, k)) => (w, Some(k.trim().parse().ok()?)),
            None => (what, None),
        };
        let action = match what.trim() {
            "panic" => Action::Panic,
            "abort" => Action::Abort,
            "error" => Action::Error,
            s => Action::Sleep(s.strip_prefix("sleep:")?.parse().ok()?),
        };
        Some((action, nth))
    })
}

#[cfg(test)]
mod tests {
    use super::{parse, Action};

    #[test]
    fn the_environment_names_failpoints_their_actions_and_which_hit() {
        assert_eq!(
            parse("a=panic,core-submit=panic", "core-submit"),
            Some((Action::Panic, None))
        );
        assert_eq!(parse("a=panic", "core-submit"), None);
        assert_eq!(parse("x=abort@3", "x"), Some((Action::Abort, Some(3))));
        assert_eq!(parse("x=sleep:1500", "x"), Some((Action::Sleep(1500), None)));
        assert_eq!(parse("x=error", "x"), Some((Action::Error, None)));
        assert_eq!(parse("x=sleep", "x"), None, "a sleep says how long");
        assert_eq!(parse("x=explode", "x"), None);
    }
}
