import KernelKit
import Kernels

/// gemm-w8a8 for one workload: the loaded variant's typed entry points and each share's block of Y.
/// The packed weight layout (`[ceil(K/4)][NR][4]` codes, scales, `128 * colsum` per panel) is the same
/// for every target of the template and depends on NR only.
struct W8A8Gemm {
    typealias PackedBytes = @convention(c) (Int32, Int32) -> Int
    typealias WorkspaceBytes = @convention(c) () -> Int
    typealias Pack = @convention(c) (UnsafePointer<Int8>?, UnsafePointer<Float>?, Int32, Int32, UnsafeMutableRawPointer?) -> Void
    typealias Kernel = @convention(c) (
        UnsafePointer<Int8>?, UnsafePointer<Float>?, UnsafeRawPointer?, UnsafeMutablePointer<Float>?,
        Int32, Int32, Int32, Int32, Int32, Int32, UnsafeMutableRawPointer?
    ) -> Void

    let loaded: LoadedKernel
    let packedBytes: PackedBytes
    let pack: Pack
    let kernel: Kernel
    let workspaceBytes: Int
    let nr: Int

    init(_ loaded: LoadedKernel) throws {
        self.loaded = loaded
        packedBytes = try loaded.function("packed_bytes", as: PackedBytes.self)
        pack = try loaded.function("pack", as: Pack.self)
        kernel = try loaded.function("kernel", as: Kernel.self)
        workspaceBytes = try loaded.function("workspace_bytes", as: WorkspaceBytes.self)()
        nr = loaded.int("nr")
    }

    /// Each share's block of the [m][n] output (`gemmThreadBlocks` of the configuration).
    func blocks(m: Int, n: Int) -> [(rows: Range<Int>, cols: Range<Int>)] {
        gemmThreadBlocks(m: m, n: n, config: loaded.choice.configuration)
    }
}

/// gemm-w4a4 for one workload (see `W8A8Gemm`; the packed layout depends on NR only as well).
struct W4A4Gemm {
    typealias PackedBytes = @convention(c) (Int32, Int32, Int32) -> Int
    typealias WorkspaceBytes = @convention(c) () -> Int
    typealias Pack = @convention(c) (
        UnsafePointer<UInt8>?, UnsafePointer<Float>?, UnsafePointer<Int8>?, UnsafePointer<Float>?, Int32, Int32, Int32,
        UnsafeMutableRawPointer?
    ) -> Void
    typealias Kernel = @convention(c) (
        UnsafePointer<UInt8>?, UnsafePointer<Float>?, UnsafePointer<Int32>?, UnsafePointer<Int8>?, UnsafePointer<Float>?,
        UnsafeRawPointer?, UnsafeMutablePointer<Float>?, Int32, Int32, Int32, Int32, Int32, Int32, Int32, UnsafeMutableRawPointer?
    ) -> Void

    let loaded: LoadedKernel
    let packedBytes: PackedBytes
    let pack: Pack
    let kernel: Kernel
    let workspaceBytes: Int
    let nr: Int

    init(_ loaded: LoadedKernel) throws {
        self.loaded = loaded
        packedBytes = try loaded.function("packed_bytes", as: PackedBytes.self)
        pack = try loaded.function("pack", as: Pack.self)
        kernel = try loaded.function("kernel", as: Kernel.self)
        workspaceBytes = try loaded.function("workspace_bytes", as: WorkspaceBytes.self)()
        nr = loaded.int("nr")
    }

    /// Each share's block of the [m][n] output (`gemmThreadBlocks` of the configuration).
    func blocks(m: Int, n: Int) -> [(rows: Range<Int>, cols: Range<Int>)] {
        gemmThreadBlocks(m: m, n: n, config: loaded.choice.configuration)
    }
}

/// One of the fused Atom quantize kernels for one workload: its entry point and each share's rows.
struct AtomQuantizeKernel {
    typealias RMSNorm = @convention(c) (
        UnsafePointer<Float>?, UnsafePointer<Float>?, UnsafePointer<Int32>?, Float, Int32, Int32, Int32, Int32,
        UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int8>?,
        UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?
    ) -> Void
    typealias Reorder = @convention(c) (
        UnsafePointer<Float>?, UnsafePointer<Int32>?, Int32, Int32, Int32, Int32,
        UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int8>?,
        UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?
    ) -> Void
    /// silu-mul-quantize has the same C signature as reorder-quantize with (gate, up) for (x, perm).
    typealias SiluMul = @convention(c) (
        UnsafePointer<Float>?, UnsafePointer<Float>?, Int32, Int32, Int32, Int32,
        UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int8>?,
        UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?
    ) -> Void

    let loaded: LoadedKernel
    let op: AtomQuantize.Op
    let entry: UnsafeMutableRawPointer
    /// Bytes of the per-share `stage` buffer (O floats, at least a cache line).
    let stageBytes: Int

    init(_ loaded: LoadedKernel, op: AtomQuantize.Op, outliers: Int) throws {
        self.loaded = loaded
        self.op = op
        entry = try loaded.function("kernel", as: UnsafeMutableRawPointer.self)
        stageBytes = max(64, (outliers * 4 + 63) / 64 * 64)
    }

    /// Each share's rows of an m-row input.
    func rows(m: Int) -> [Range<Int>] { balancedRanges(count: m, parts: loaded.int("threads"), unit: 1) }

    var rmsNorm: RMSNorm { unsafeBitCast(entry, to: RMSNorm.self) }
    var reorder: Reorder { unsafeBitCast(entry, to: Reorder.self) }
    var siluMul: SiluMul { unsafeBitCast(entry, to: SiluMul.self) }
}

/// gemm-f16 for one workload (the FP16 lm_head): entry points and each share's block of Y. The packed
/// layout (panels of NR columns, `[k][NR]` halves) depends on NR only.
struct F16Gemm {
    typealias PackedBytes = @convention(c) (Int32, Int32) -> Int
    typealias Pack = @convention(c) (UnsafePointer<UInt16>?, Int32, Int32, UnsafeMutableRawPointer?) -> Void
    typealias Kernel = @convention(c) (
        UnsafePointer<Float>?, UnsafeRawPointer?, UnsafeMutablePointer<Float>?, Int32, Int32, Int32, Int32, Int32, Int32
    ) -> Void

    let loaded: LoadedKernel
    let packedBytes: PackedBytes
    let pack: Pack
    let kernel: Kernel
    let nr: Int

    init(_ loaded: LoadedKernel) throws {
        self.loaded = loaded
        packedBytes = try loaded.function("packed_bytes", as: PackedBytes.self)
        pack = try loaded.function("pack", as: Pack.self)
        kernel = try loaded.function("kernel", as: Kernel.self)
        nr = loaded.int("nr")
    }

    /// Each share's block of the [m][n] output (`gemmThreadBlocks` of the configuration).
    func blocks(m: Int, n: Int) -> [(rows: Range<Int>, cols: Range<Int>)] {
        gemmThreadBlocks(m: m, n: n, config: loaded.choice.configuration)
    }
}
