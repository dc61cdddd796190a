//! Memory hints for large arrays read at random (graph traversal).

/// Asks the kernel to back `v`'s allocation with transparent huge pages (Linux, where THP is in
/// `madvise` mode): random reads over tens of megabytes then miss the TLB far less. A hint only;
/// it does nothing elsewhere or if refused. Call it before the memory is first written.
pub fn advise_huge_pages<T>(v: &Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = v.as_ptr() as usize;
        let end = start + v.capacity() * std::mem::size_of::<T>();
        let (a, b) = (start.div_ceil(HUGE) * HUGE, end / HUGE * HUGE);
        if b > a {
            // SAFETY: [a, b) lies inside the allocation; madvise only changes paging policy.
            unsafe {
                libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

/// Reserves room for `additional` more items like `Vec::reserve` (doubling), but moves the data
/// into a fresh allocation advised for huge pages before it is written.
pub fn reserve_huge<T: Copy>(v: &mut Vec<T>, additional: usize) {
    let need = v.len() + additional;
    if need <= v.capacity() {
        return;
    }
    let mut fresh = Vec::with_capacity(need.max(2 * v.capacity()));
    advise_huge_pages(&fresh);
    fresh.extend_from_slice(v);
    *v = fresh;
}

/// [`reserve_huge`] that reports a failed allocation instead of aborting.
pub fn try_reserve_huge<T: Copy>(
    v: &mut Vec<T>,
    additional: usize,
) -> Result<(), std::collections::TryReserveError> {
    let need = v.len().saturating_add(additional);
    if need <= v.capacity() {
        return Ok(());
    }
    let mut fresh: Vec<T> = Vec::new();
    fresh.try_reserve_exact(need.max(2 * v.capacity()))?;
    advise_huge_pages(&fresh);
    fresh.extend_from_slice(v);
    *v = fresh;
    Ok(())
}

/// Bytes of physical memory (Linux), or a generous stand-in elsewhere.
pub fn physical_memory() -> usize {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf only reads system configuration.
        let (pages, size) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        if pages > 0 && size > 0 {
            return (pages as usize).saturating_mul(size as usize);
        }
    }
    1 << 40
}
