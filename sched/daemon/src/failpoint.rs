//! Failpoints: named places where a test can make vjobd fail on purpose, switched on by the
//! `VJOB_FAILPOINTS` environment variable (`name=panic,other=panic`) in debug builds only; a
//! release build compiles them to nothing. The chaos tests of the test suite use them to
//! check that vjobd survives what they cause.

/// What a failpoint does when it is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Panic,
}

/// The action the environment asks at failpoint `name`, if any.
#[cfg(debug_assertions)]
pub fn action(name: &str) -> Option<Action> {
    let spec = std::env::var("VJOB_FAILPOINTS").ok()?;
    parse(&spec, name)
}

#[cfg(not(debug_assertions))]
pub fn action(_name: &str) -> Option<Action> {
    None
}

/// Failpoint `name`: does what the environment asks there.
pub fn hit(name: &str) {
    if let Some(Action::Panic) = action(name) {
        panic!("failpoint {name}: panic");
    }
}

#[cfg_attr(not(debug_assertions), allow(dead_code))]
fn parse(spec: &str, name: &str) -> Option<Action> {
    spec.split(',').find_map(|item| match item.trim().split_once('=') {
        Some((n, "panic")) if n.trim() == name => Some(Action::Panic),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_environment_names_failpoints_and_their_actions() {
        assert_eq!(
            super::parse("a=panic,core-submit=panic", "core-submit"),
            Some(super::Action::Panic)
        );
        assert_eq!(super::parse("a=panic", "core-submit"), None);
        assert_eq!(super::parse("core-submit=sleep", "core-submit"), None);
    }
}
