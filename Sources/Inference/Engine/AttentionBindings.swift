import KernelKit
import Kernels

/// kv-append for one workload: the entry point, each share's range of new rows, and the page size the
/// variant was generated for (checked against the cache's layout).
struct KVAppendKernel {
    typealias PageBytes = @convention(c) (Int32, Int32) -> Int
    typealias Kernel = @convention(c) (
        UnsafePointer<Float>?, UnsafePointer<Float>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?,
        UnsafePointer<Int32>?, Int32, UnsafeMutableRawPointer?, Int32, Int32, Int32, Int32
    ) -> Void

    let loaded: LoadedKernel
    let kernel: Kernel

    init(_ loaded: LoadedKernel, layout: KVPageLayout) throws {
        self.loaded = loaded
        kernel = try loaded.function("kernel", as: Kernel.self)
        let pageBytes = try loaded.function("page_bytes", as: PageBytes.self)(Int32(layout.kvHeads), Int32(layout.headDim))
        guard pageBytes == layout.pageBytes else {
            throw EngineError.kernelUnavailable(
                family: loaded.choice.family, workload: loaded.choice.workload.description,
                reason: "the variant's page is \(pageBytes) bytes; the cache's is \(layout.pageBytes)")
        }
    }

    /// Each share's range of `rows` new rows.
    func ranges(rows: Int) -> [Range<Int>] { balancedRanges(count: rows, parts: loaded.int("threads"), unit: 1) }
}

/// attention-decode for one workload: the entry point, the per-share workspace size, each share's
/// range of (KV-head chunk, split, entry) units, and the split count (which sizes the partials buffer).
struct AttentionKernel {
    typealias Bytes = @convention(c) (Int32, Int32) -> Int
    typealias Kernel = @convention(c) (
        UnsafePointer<Float>?, UnsafeRawPointer?, UnsafePointer<Int32>?, Int32, UnsafePointer<Int32>?, Int32,
        UnsafePointer<Float>?, UnsafePointer<Float>?, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?,
        UnsafeMutablePointer<Int32>?, Int32, Int32, Int32, Int32, Int32, UnsafeMutableRawPointer?
    ) -> Void

    let loaded: LoadedKernel
    let kernel: Kernel
    let workspaceBytes: Int
    let split: Int
    let kvHeads: Int

    init(_ loaded: LoadedKernel, queryHeads: Int, layout: KVPageLayout) throws {
        self.loaded = loaded
        kernel = try loaded.function("kernel", as: Kernel.self)
        let hkv = Int32(layout.kvHeads), d = Int32(layout.headDim)
        let pageBytes = try loaded.function("page_bytes", as: Bytes.self)(hkv, d)
        guard pageBytes == layout.pageBytes else {
            throw EngineError.kernelUnavailable(
                family: loaded.choice.family, workload: loaded.choice.workload.description,
                reason: "the variant's page is \(pageBytes) bytes; the cache's is \(layout.pageBytes)")
        }
        workspaceBytes = try loaded.function("workspace_bytes", as: Bytes.self)(Int32(queryHeads / layout.kvHeads), d)
        split = loaded.int("split")
        kvHeads = layout.kvHeads
    }

    /// Each share's range of the (KV-head chunk, split, entry) units of `entries` entries.
    func ranges(entries: Int) -> [Range<Int>] {
        balancedRanges(count: AttentionDecode.unitCount(batch: entries, kvHeads: kvHeads, config: loaded.choice.configuration), parts: loaded.int("threads"), unit: 1)
    }
}
