//! The start-up's undo log. `ha-user run` validates everything it can before it
//! changes anything (see [`super::boot`]); the changes that follow are recorded here
//! as each is about to be made, with what was there before, so that any failure
//! undoes them all, newest first, and leaves the machine as the start-up found it. A
//! start-up that reaches its end disarms the log.
//!
//! | step ([`Step`]) | what it changes | undone by |
//! |---|---|---|
//! | `control-socket` | binds the control socket | removing the socket file |
//! | `routes` | takes over the route of every configured prefix | putting back every route of a configured prefix, and every route of ours, as the kernel reported it before: an installed route is deleted, an adopted one returns with its protocol, gateway, metric and every other attribute ([`RouteSnapshot`]) |
//! | `reset` (`--reset` only) | removes the old pins and the state file | nothing: that was asked for |
//! | `load` | loads the programs, creates and pins missing maps | removing the pins this start-up made, and the pin directory if it made it ([`PinsBefore`]) |
//! | `maps` | writes the maps | writing back the contents of the maps it adopted ([`MapsBefore`]) |
//! | `xdp` | attaches `ha_steer` to each interface | unpinning a new link (which detaches it), or putting the previous program back behind an adopted link ([`XdpBefore`]) |
//! | `learn` | attaches `ha_learn` to the LAN's egress | the same for its TCX link; a clsact filter it added is removed ([`LearnBefore`]) |
//! | `watch` | follows neighbours and the LAN's MTU | nothing (sockets, closed on exit) |
//!
//! The controller lock is held until the undo is over, so no other controller
//! starts on a half-undone machine.
//!
//! # The test hook
//!
//! In debug builds only (`debug_assertions`), `HA_TEST_FAIL_AFTER=<step>` makes the
//! start-up fail right after that step, so a test can check that every step is
//! undone, including those that have no natural way to fail. A name that is not a
//! step is refused before anything changes. Release builds do not contain the hook:
//! the variable means nothing to them.

use std::{fmt, path::PathBuf};

use rtnetlink::Handle;
use tracing::{info, warn};

use crate::kernel::{
    datapath::undo::{LearnBefore, LinkRestored, MapsBefore, PinsBefore, XdpBefore},
    route_snapshot::RouteSnapshot,
};

/// The environment variable of the test hook (debug builds only).
pub const FAIL_AFTER: &str = "HA_TEST_FAIL_AFTER";

/// The steps of a start-up that change something, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    ControlSocket,
    Routes,
    Reset,
    Load,
    Maps,
    Xdp,
    Learn,
    Watch,
}

impl Step {
    /// Every step, in the order a start-up takes them.
    pub const ALL: [Step; 8] = [
        Step::ControlSocket,
        Step::Routes,
        Step::Reset,
        Step::Load,
        Step::Maps,
        Step::Xdp,
        Step::Learn,
        Step::Watch,
    ];

    /// The step's name, as the test hook takes it.
    pub fn name(self) -> &'static str {
        match self {
            Step::ControlSocket => "control-socket",
            Step::Routes => "routes",
            Step::Reset => "reset",
            Step::Load => "load",
            Step::Maps => "maps",
            Step::Xdp => "xdp",
            Step::Learn => "learn",
            Step::Watch => "watch",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One recorded change, with what undoes it.
#[derive(Debug)]
pub(super) enum Undo {
    ControlSocket(PathBuf),
    Routes(RouteSnapshot),
    Pins(PinsBefore),
    Maps(MapsBefore),
    Xdp { iface: String, before: XdpBefore },
    Learn { iface: String, before: LearnBefore },
}

/// The undo log of one start-up.
pub(super) struct Rollback {
    handle: Handle,
    log: Vec<Undo>,
    /// The step the test hook fails after.
    fail_after: Option<Step>,
}

impl Rollback {
    /// An empty log. Refuses a test hook naming no step (debug builds).
    pub fn new(handle: Handle) -> anyhow::Result<Rollback> {
        Ok(Rollback {
            handle,
            log: Vec::new(),
            fail_after: test_hook()?,
        })
    }

    /// Records a change about to be made (or just made).
    pub fn record(&mut self, undo: Undo) {
        self.log.push(undo);
    }

    /// Marks `step` done: the test hook fails here if it names it.
    pub fn passed(&self, step: Step) -> anyhow::Result<()> {
        if self.fail_after == Some(step) {
            anyhow::bail!("{FAIL_AFTER}={step}: a failure injected after the step `{step}`");
        }
        Ok(())
    }

    /// The start-up succeeded: what was recorded stays as it is (the programs held to
    /// put them back are released).
    pub fn disarm(self) {
        drop(self.log);
    }

    /// Undoes everything recorded, newest first; every entry is tried.
    pub async fn undo(self) -> Undone {
        let Rollback {
            handle,
            mut log,
            fail_after: _,
        } = self;
        let mut undone = Undone::default();
        while let Some(entry) = log.pop() {
            undo_one(&handle, entry, &mut undone).await;
        }
        undone
    }
}

async fn undo_one(handle: &Handle, entry: Undo, undone: &mut Undone) {
    match entry {
        Undo::ControlSocket(path) => match std::fs::remove_file(&path) {
            Ok(()) => undone.did(format!("removed the control socket {}", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => undone.failed(format!("removing {}: {err}", path.display())),
        },
        Undo::Routes(snapshot) => match snapshot.restore(handle).await {
            Ok(restored) if restored.deleted + restored.put_back > 0 => undone.did(format!(
                "put the kernel routes back ({} put back as they were, {} of ours deleted)",
                restored.put_back, restored.deleted
            )),
            Ok(_) => {}
            Err(err) => undone.failed(format!("the kernel routes: {:#}", anyhow::Error::new(err))),
        },
        Undo::Pins(pins) => match pins.restore() {
            Ok(removed) if !removed.is_empty() => {
                undone.did(format!("removed the {} pins it made", removed.len()));
            }
            Ok(_) => {}
            Err(err) => undone.failed(format!("the pins: {:#}", anyhow::Error::new(err))),
        },
        Undo::Maps(maps) => match maps.restore() {
            Ok(restored) if !restored.is_empty() => undone.did(format!(
                "wrote back the adopted maps {}",
                restored.join(", ")
            )),
            Ok(_) => {}
            Err(err) => undone.failed(format!("the adopted maps: {:#}", anyhow::Error::new(err))),
        },
        Undo::Xdp { iface, before } => match before.restore() {
            Ok(restored) => link_undone(undone, "XDP", &iface, restored),
            Err(err) => undone.failed(format!("XDP on {iface}: {:#}", anyhow::Error::new(err))),
        },
        Undo::Learn { iface, before } => match before.restore() {
            Ok(restored) => link_undone(undone, "ha_learn", &iface, restored),
            Err(err) => {
                undone.failed(format!(
                    "ha_learn on {iface}: {:#}",
                    anyhow::Error::new(err)
                ));
            }
        },
    }
}

fn link_undone(undone: &mut Undone, what: &str, iface: &str, restored: LinkRestored) {
    match restored {
        LinkRestored::Unchanged => {}
        LinkRestored::Detached => undone.did(format!("detached {what} from {iface}")),
        LinkRestored::Reverted { program } => undone.did(format!(
            "put program id {program} back behind the {what} link of {iface}"
        )),
    }
}

/// What an undo did, and what it could not do.
#[derive(Debug, Default)]
pub(super) struct Undone {
    done: Vec<String>,
    failed: Vec<String>,
}

impl Undone {
    fn did(&mut self, action: String) {
        info!("start-up undone: {action}");
        self.done.push(action);
    }

    fn failed(&mut self, problem: String) {
        warn!("start-up not undone: {problem}");
        self.failed.push(problem);
    }

    /// `err`, the failure of the start-up, with what was undone.
    pub fn explain(self, err: anyhow::Error) -> anyhow::Error {
        err.context(self.to_string())
    }
}

impl fmt::Display for Undone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Undone { done, failed } = self;
        if failed.is_empty() {
            write!(f, "the start-up failed and was undone")?;
        } else {
            write!(
                f,
                "the start-up failed and was NOT completely undone ({})",
                failed.join("; ")
            )?;
        }
        if done.is_empty() {
            write!(f, " (it had changed nothing yet)")
        } else {
            write!(f, " ({})", done.join("; "))
        }
    }
}

/// The step `HA_TEST_FAIL_AFTER` names, in debug builds.
#[cfg(debug_assertions)]
fn test_hook() -> anyhow::Result<Option<Step>> {
    let Some(value) = std::env::var_os(FAIL_AFTER) else {
        return Ok(None);
    };
    let value = value.to_string_lossy();
    match Step::ALL.into_iter().find(|step| step.name() == value) {
        Some(step) => {
            warn!(
                "{FAIL_AFTER}={step}: this start-up will fail after the step `{step}` (a test hook)"
            );
            Ok(Some(step))
        }
        None => {
            let names: Vec<&str> = Step::ALL.iter().map(|step| step.name()).collect();
            anyhow::bail!(
                "{FAIL_AFTER}={value:?} names no start-up step (the steps: {})",
                names.join(", ")
            )
        }
    }
}

/// Release builds have no test hook.
#[cfg(not(debug_assertions))]
fn test_hook() -> anyhow::Result<Option<Step>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_what_was_undone_and_what_was_not() {
        let mut undone = Undone::default();
        assert_eq!(
            undone.to_string(),
            "the start-up failed and was undone (it had changed nothing yet)"
        );
        undone.did("detached XDP from eth1".to_owned());
        undone.did("removed the 11 pins it made".to_owned());
        assert_eq!(
            undone.to_string(),
            "the start-up failed and was undone (detached XDP from eth1; removed the 11 pins it made)"
        );
        undone.failed("XDP on eth0: gone".to_owned());
        let text = undone.to_string();
        assert!(
            text.starts_with(
                "the start-up failed and was NOT completely undone (XDP on eth0: gone)"
            ),
            "{text}"
        );
        let err = undone.explain(anyhow::anyhow!("the cause"));
        assert!(format!("{err:#}").ends_with(": the cause"), "{err:#}");
    }

    #[test]
    fn step_names_are_distinct() {
        for (i, a) in Step::ALL.iter().enumerate() {
            for b in &Step::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }
}
