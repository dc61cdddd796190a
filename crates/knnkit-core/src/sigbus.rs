//! Surviving a mapped file that another program truncates in place.
//!
//! knnkit never rewrites its files in place (saves rename a new file over the old), but another
//! program may: `truncate`, or a writer that opens the path with `O_TRUNC`. Reading a mapped page
//! past the new end of the file raises `SIGBUS`, which kills the process. Here every mapping is
//! registered in a fixed table; a `SIGBUS` handler (installed once, chaining to whatever handler
//! was there before) checks whether the faulting address lies in a registered mapping and, if
//! so, maps a zero page over it, marks that mapping damaged and lets the read retry. The index
//! then reports the damage as an error after the call ([`guard_check`]) instead of dying.
//!
//! What the handler does is async-signal-safe: atomic loads and stores and one `mmap` system
//! call. Faults outside registered mappings go to the previous handler (or the default action).
//! A table of [`SLOTS`] mappings is enough for any sane process; mappings past it are simply not
//! guarded. Linux only; elsewhere the functions are no-ops.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Mappings guarded at once.
pub const SLOTS: usize = 1024;

struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    damaged: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    damaged: AtomicBool::new(false),
};

static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];

/// A registered mapping; unregisters on drop.
#[derive(Debug)]
pub struct Guard(Option<usize>);

impl Guard {
    /// Registers `[start, start + len)` (installing the handler on first use).
    pub fn register(start: usize, len: usize) -> Guard {
        if len == 0 || !install() {
            return Guard(None);
        }
        for (i, slot) in TABLE.iter().enumerate() {
            if slot
                .len
                .compare_exchange(0, len, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                slot.damaged.store(false, Ordering::Relaxed);
                slot.start.store(start, Ordering::Release);
                return Guard(Some(i));
            }
        }
        Guard(None)
    }

    /// True when a read of the mapping faulted (the file shrank under it).
    pub fn damaged(&self) -> bool {
        self.0
            .is_some_and(|i| TABLE[i].damaged.load(Ordering::Acquire))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            TABLE[i].start.store(0, Ordering::Release);
            TABLE[i].len.store(0, Ordering::Release);
        }
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;
    use std::sync::OnceLock;

    static mut PREVIOUS: Option<libc::sigaction> = None;

    extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
        let addr = unsafe { (*info).si_addr() } as usize;
        for slot in TABLE.iter() {
            let start = slot.start.load(Ordering::Acquire);
            let len = slot.len.load(Ordering::Acquire);
            if start != 0 && addr >= start && addr < start + len {
                // SAFETY: sysconf is a plain query.
                let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
                let at = addr / page * page;
                // SAFETY: the page lies inside a mapping this process owns and registered; a
                // zero page replaces it (MAP_FIXED) so the faulting read can retry.
                let p = unsafe {
                    libc::mmap(
                        at as *mut libc::c_void,
                        page,
                        libc::PROT_READ,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                        -1,
                        0,
                    )
                };
                if p != libc::MAP_FAILED {
                    slot.damaged.store(true, Ordering::Release);
                    return;
                }
            }
        }
        // Not ours: hand over to the handler that was there before, or the default action.
        // SAFETY: PREVIOUS is written once, before this handler is installed.
        let prev = unsafe { *std::ptr::addr_of!(PREVIOUS) };
        match prev {
            Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
                if p.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        // SAFETY: a SA_SIGINFO handler has this signature.
                        unsafe { std::mem::transmute(p.sa_sigaction) };
                    f(sig, info, ctx);
                } else {
                    // SAFETY: a plain handler takes the signal number only.
                    let f: extern "C" fn(libc::c_int) =
                        unsafe { std::mem::transmute(p.sa_sigaction) };
                    f(sig);
                }
            }
            _ => {
                // SAFETY: restoring the default action; the faulting read re-executes and the
                // process ends as it would have without knnkit.
                unsafe {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
        }
    }

    pub fn install() -> bool {
        static DONE: OnceLock<bool> = OnceLock::new();
        *DONE.get_or_init(|| {
            // SAFETY: sigaction with a zeroed struct and a handler of the SA_SIGINFO shape;
            // PREVIOUS is written before the new handler can run.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) != 0 {
                    return false;
                }
                *std::ptr::addr_of_mut!(PREVIOUS) = Some(old);
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = handler as *const () as usize;
                act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut act.sa_mask);
                libc::sigaction(libc::SIGBUS, &act, std::ptr::null_mut()) == 0
            }
        })
    }
}

#[cfg(target_os = "linux")]
use imp::install;

#[cfg(not(target_os = "linux"))]
fn install() -> bool {
    false
}
