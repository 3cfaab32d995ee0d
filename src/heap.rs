//! The allocator's settings. jemalloc hands pages freed by the application back to the OS after
//! `dirty_decay_ms` (10 s by default). A sweep's answers and a relist's pages are freed within a
//! second, so with the default a peak stays resident for ten: in `e2e/bench scale` jemalloc held
//! 124 MB resident for 72 MB of live pages. One second keeps the working set honest at the cost of
//! a few more `madvise` calls from its background thread.
//!
//! jemalloc also gives each CPU four arenas, each with its own partly used pages per size class;
//! an operator is not allocation-bound, so every thread shares one ([`use_one_arena`]): in the same
//! run, peak RSS 112 → 99 MiB.

use tikv_jemalloc_ctl::{Access, AsName, arenas};

/// Milliseconds before freed pages go back to the OS.
pub const DECAY_MS: isize = 1000;

/// Sets the decay of every arena, existing and future, to `ms` (dirty) and 0 (muzzy: freed pages
/// are returned at once instead of lingering as lazily-freed). Failures are ignored: the defaults
/// only cost memory.
pub fn return_freed_pages_within(ms: isize) {
    let _ = "arenas.dirty_decay_ms\0".name().write(ms);
    let _ = "arenas.muzzy_decay_ms\0".name().write(0isize);
    let n = arenas::narenas::read().unwrap_or(0);
    for i in 0..n {
        // An arena not yet initialised refuses the write; it takes the defaults set above.
        let _ = format!("arena.{i}.dirty_decay_ms\0").name().write(ms);
        let _ = format!("arena.{i}.muzzy_decay_ms\0").name().write(0isize);
    }
}

/// Makes the calling thread allocate from arena 0 (call it on every thread the runtime starts).
pub fn use_one_arena() {
    let _ = "thread.arena\0".name().write(0u32);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are jemalloc's (a typo would silently leave the defaults) and the writes stick,
    /// for future arenas and for arena 0, which exists from the first call.
    #[test]
    fn the_decay_is_set_for_existing_and_future_arenas() {
        return_freed_pages_within(1234);
        let future: Result<isize, _> = "arenas.dirty_decay_ms\0".name().read();
        let first: Result<isize, _> = "arena.0.dirty_decay_ms\0".name().read();
        let muzzy: Result<isize, _> = "arena.0.muzzy_decay_ms\0".name().read();
        assert_eq!(
            (future.ok(), first.ok(), muzzy.ok()),
            (Some(1234), Some(1234), Some(0))
        );
    }

    #[test]
    fn a_thread_can_be_bound_to_the_first_arena() {
        std::thread::spawn(|| {
            use_one_arena();
            let a: Result<u32, _> = "thread.arena\0".name().read();
            assert_eq!(a.ok(), Some(0));
        })
        .join()
        .expect("the thread ran");
    }
}
