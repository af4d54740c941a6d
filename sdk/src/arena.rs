//! The allocator of a plugin built for `wasm32-unknown-unknown`.
//!
//! The engine runs every event in a fresh instance, whose memory is thrown away afterwards, so
//! what a plugin allocates never needs to be found again: a bump allocator over a static arena
//! is all it takes, and it spares the first allocation of every event the `memory.grow` (a
//! system call in the host) that the standard allocator makes to get its first heap. Freeing
//! the newest allocation, or growing it, works in place; whatever does not fit in the arena
//! goes to the standard allocator.
//!
//! (On `wasm32-wasip2` the C library's allocator starts inside the initial memory already, and
//! this module is not compiled.)
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;

/// The arena's size. Its pages cost nothing until they are touched.
const SIZE: usize = 1 << 20;

#[repr(C, align(16))]
struct Arena {
    bytes: UnsafeCell<[u8; SIZE]>,
    /// The offset of the first free byte.
    next: UnsafeCell<usize>,
}

// SAFETY: a `wasm32-unknown-unknown` module without the `atomics` feature (the only build this
// module is compiled for) has one thread.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena {
    bytes: UnsafeCell::new([0; SIZE]),
    next: UnsafeCell::new(0),
};

/// The arena first, then the standard allocator.
struct BumpThenSystem;

impl Arena {
    fn base(&self) -> usize {
        self.bytes.get() as usize
    }

    fn owns(&self, ptr: *mut u8) -> bool {
        (self.base()..self.base() + SIZE).contains(&(ptr as usize))
    }

    /// The offset `layout` would start at, and where it would end, if it fits.
    fn place(&self, layout: Layout) -> Option<(usize, usize)> {
        // SAFETY: one thread (see above); no reference to `next` outlives this call.
        let next = unsafe { *self.next.get() };
        let start = (self.base() + next).checked_next_multiple_of(layout.align())? - self.base();
        let end = start.checked_add(layout.size())?;
        (end <= SIZE).then_some((start, end))
    }

    fn set_next(&self, next: usize) {
        // SAFETY: as in `place`.
        unsafe { *self.next.get() = next }
    }

    /// Whether `ptr` (of `size` bytes) is the newest allocation.
    fn is_last(&self, ptr: *mut u8, size: usize) -> bool {
        // SAFETY: as in `place`.
        let next = unsafe { *self.next.get() };
        ptr as usize + size == self.base() + next
    }
}

// SAFETY: every block handed out lies inside the arena or comes from `System`, is aligned as
// asked, and is never handed out twice while live: the arena only moves forward, except when
// its newest block is freed or resized in place.
unsafe impl GlobalAlloc for BumpThenSystem {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match ARENA.place(layout) {
            Some((start, end)) => {
                ARENA.set_next(end);
                (ARENA.base() + start) as *mut u8
            }
            // SAFETY: the caller's contract, passed on.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !ARENA.owns(ptr) {
            // SAFETY: it came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) };
        } else if ARENA.is_last(ptr, layout.size()) {
            ARENA.set_next(ptr as usize - ARENA.base());
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARENA.owns(ptr) && ARENA.is_last(ptr, layout.size()) {
            let start = ptr as usize - ARENA.base();
            if let Some(end) = start.checked_add(new_size).filter(|end| *end <= SIZE) {
                ARENA.set_next(end);
                return ptr;
            }
        }
        if !ARENA.owns(ptr) {
            // SAFETY: it came from `System` with this layout.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new_size` is valid for `layout.align()` (the caller's contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as in `alloc`.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct, and at least this long.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: `ptr` is live with `layout`.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: BumpThenSystem = BumpThenSystem;
