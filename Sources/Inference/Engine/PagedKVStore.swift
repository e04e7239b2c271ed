import KernelKit
import Kernels

/// The engine's paged KV cache (KERNELS.md section 4, `KVPageLayout`): per layer, one pool of physical
/// pages; per sequence slot, one page table shared by all layers (a logical page holds the same
/// positions in every layer). Keys are stored before RoPE; the format (fp32, int8, int4) is the mode's.
///
/// Pages are taken from a free list as a sequence grows and returned when it is released, so sequences
/// of any lengths share the pools (continuous batching); a slot is a row of the page table.
final class PagedKVStore {
    let layout: KVPageLayout
    let layers: Int
    /// Sequence slots (rows of the page table).
    let slots: Int
    /// Logical pages per slot: ceil(capacity / page tokens).
    let maxPages: Int
    /// Tokens one sequence may hold.
    let capacity: Int
    let physicalPages: Int
    private let pools: [AlignedBuffer]
    /// [slots][maxPages] physical page of each logical page, -1 where none.
    let pageTable: AlignedBuffer
    private var freePages: [Int32]
    private var freeSlots: [Int]
    /// Pages held by each slot.
    private var held: [Int]

    /// - Parameters:
    ///   - pages: physical pages per layer; nil gives every slot room for `capacity` tokens.
    init(layout: KVPageLayout, layers: Int, slots: Int, capacity: Int, pages: Int? = nil) throws {
        guard slots >= 1, capacity >= 1 else { throw EngineError.invalidInput("the KV cache needs at least one slot and one token") }
        self.layout = layout
        self.layers = layers
        self.slots = slots
        self.capacity = capacity
        maxPages = Self.pagesPerSlot(layout: layout, capacity: capacity)
        let physical = pages ?? slots * maxPages
        physicalPages = physical
        guard physical <= Int(Int32.max) else { throw EngineError.invalidInput("\(physical) pages do not fit int32 page numbers") }
        pools = (0..<layers).map { _ in AlignedBuffer(byteCount: physical * layout.pageBytes) }
        pageTable = AlignedBuffer(byteCount: slots * maxPages * 4)
        let table = pageTable.pointer.assumingMemoryBound(to: Int32.self)
        table.update(repeating: -1, count: slots * maxPages)
        freePages = (0..<Int32(physicalPages)).reversed()
        freeSlots = (0..<slots).reversed()
        held = Array(repeating: 0, count: slots)
    }

    /// Bytes of all pools.
    var byteCount: Int { pools.reduce(0) { $0 + $1.byteCount } }

    /// Logical pages a slot of `capacity` tokens needs.
    static func pagesPerSlot(layout: KVPageLayout, capacity: Int) -> Int {
        (capacity + layout.pageTokens - 1) / layout.pageTokens
    }

    /// Bytes of the pools of a store with room for `slots` sequences of `capacity` tokens in every one of
    /// `layers` layers (what `init` allocates when `pages` is nil), computed without allocating.
    static func byteCount(layout: KVPageLayout, layers: Int, slots: Int, capacity: Int) -> Int {
        layers * slots * pagesPerSlot(layout: layout, capacity: capacity) * layout.pageBytes
    }

    /// The pool of `layer`.
    func pool(_ layer: Int) -> UnsafeMutableRawPointer { pools[layer].pointer }

    var table: UnsafeMutablePointer<Int32> { pageTable.pointer.assumingMemoryBound(to: Int32.self) }

    /// A free slot with no pages.
    func takeSlot() throws -> Int {
        guard let s = freeSlots.popLast() else {
            throw EngineError.cacheFull("all \(slots) sequence slots are in use; release a sequence or make the engine with more")
        }
        return s
    }

    /// Returns the slot's pages and the slot.
    func release(_ slot: Int) {
        let row = table + slot * maxPages
        for p in 0..<held[slot] {
            freePages.append(row[p])
            row[p] = -1
        }
        held[slot] = 0
        freeSlots.append(slot)
    }

    /// Makes sure positions `0..<length` of `slot` have pages.
    func reserve(_ slot: Int, length: Int) throws {
        guard length <= capacity else {
            throw EngineError.cacheFull("a sequence of \(length) tokens exceeds the cache's capacity of \(capacity) per sequence")
        }
        let needed = (length + layout.pageTokens - 1) / layout.pageTokens
        let row = table + slot * maxPages
        while held[slot] < needed {
            guard let page = freePages.popLast() else {
                throw EngineError.cacheFull("no free page left (\(physicalPages) pages of \(layout.pageTokens) tokens per layer)")
            }
            row[held[slot]] = page
            held[slot] += 1
        }
    }
}
