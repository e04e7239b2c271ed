import KernelKit
import Kernels

/// A packed-weight GEMM variant for one workload: its `packed_bytes`, `pack` and `kernel` entry points
/// with their C signatures, its per-share workspace (`workspace_bytes`, where the family has one), what
/// its packed layout depends on (`packing`: the panel width NR, and for gemm-w4a4 also where the scales
/// go and whether codes are stored as w + 8), and each share's block of Y.
struct PackedGemm<PackedBytes, Pack, Kernel> {
    typealias WorkspaceBytes = @convention(c) () -> Int

    let loaded: LoadedKernel
    let packedBytes: PackedBytes
    let pack: Pack
    let kernel: Kernel
    let workspaceBytes: Int
    let nr: Int
    /// Configurations with the same key share one packing of the weights.
    let packing: String

    init(_ loaded: LoadedKernel, workspace: Bool, packing: ((Configuration) -> String)? = nil) throws {
        self.loaded = loaded
        packedBytes = try loaded.function("packed_bytes", as: PackedBytes.self)
        pack = try loaded.function("pack", as: Pack.self)
        kernel = try loaded.function("kernel", as: Kernel.self)
        workspaceBytes = workspace ? try loaded.function("workspace_bytes", as: WorkspaceBytes.self)() : 0
        nr = loaded.int("nr")
        self.packing = packing?(loaded.choice.configuration) ?? "nr=\(nr)"
    }

    /// Each share's block of the [m][n] output (`gemmThreadBlocks` of the configuration).
    func blocks(m: Int, n: Int) -> [(rows: Range<Int>, cols: Range<Int>)] {
        gemmThreadBlocks(m: m, n: n, config: loaded.choice.configuration)
    }
}

/// gemm-w8a8: `[ceil(K/4)][NR][4]` codes, scales and `128 * colsum` per panel.
enum W8A8Entry {
    typealias PackedBytes = @convention(c) (Int32, Int32) -> Int
    typealias Pack = @convention(c) (UnsafePointer<Int8>?, UnsafePointer<Float>?, Int32, Int32, UnsafeMutableRawPointer?) -> Void
    typealias Kernel = @convention(c) (
        UnsafePointer<Int8>?, UnsafePointer<Float>?, UnsafeRawPointer?, UnsafeMutablePointer<Float>?,
        Int32, Int32, Int32, Int32, Int32, Int32, UnsafeMutableRawPointer?
    ) -> Void
}
typealias W8A8Gemm = PackedGemm<W8A8Entry.PackedBytes, W8A8Entry.Pack, W8A8Entry.Kernel>

/// gemm-w4a4: nibble-packed panels with group scales and INT8 outlier columns.
enum W4A4Entry {
    typealias PackedBytes = @convention(c) (Int32, Int32, Int32) -> Int
    typealias Pack = @convention(c) (
        UnsafePointer<UInt8>?, UnsafePointer<Float>?, UnsafePointer<Int8>?, UnsafePointer<Float>?, Int32, Int32, Int32,
        UnsafeMutableRawPointer?
    ) -> Void
    typealias Kernel = @convention(c) (
        UnsafePointer<UInt8>?, UnsafePointer<Float>?, UnsafePointer<Int32>?, UnsafePointer<Int8>?, UnsafePointer<Float>?,
        UnsafeRawPointer?, UnsafeMutablePointer<Float>?, Int32, Int32, Int32, Int32, Int32, Int32, Int32, UnsafeMutableRawPointer?
    ) -> Void
}
typealias W4A4Gemm = PackedGemm<W4A4Entry.PackedBytes, W4A4Entry.Pack, W4A4Entry.Kernel>

/// gemm-f16 (the FP16 lm_head): panels of NR columns, `[k][NR]` halves; no workspace.
enum F16Entry {
    typealias PackedBytes = @convention(c) (Int32, Int32) -> Int
    typealias Pack = @convention(c) (UnsafePointer<UInt16>?, Int32, Int32, UnsafeMutableRawPointer?) -> Void
    typealias Kernel = @convention(c) (
        UnsafePointer<Float>?, UnsafeRawPointer?, UnsafeMutablePointer<Float>?, Int32, Int32, Int32, Int32, Int32, Int32
    ) -> Void
}
typealias F16Gemm = PackedGemm<F16Entry.PackedBytes, F16Entry.Pack, F16Entry.Kernel>

/// One of the fused Atom quantize kernels for one workload: its entry point and each share's rows.
struct AtomQuantizeKernel {
    typealias RMSNorm = @convention(c) (
        UnsafePointer<Float>?, UnsafePointer<Float>?, UnsafePointer<Int32>?, Float, Int32, Int32, Int32, Int32, Int32,
        UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int8>?,
        UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?
    ) -> Void
    typealias Reorder = @convention(c) (
        UnsafePointer<Float>?, UnsafePointer<Int32>?, Int32, Int32, Int32, Int32, Int32,
        UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int8>?,
        UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?
    ) -> Void
    /// silu-mul-quantize has the same C signature as reorder-quantize with (gate, up) for (x, perm).
    typealias SiluMul = @convention(c) (
        UnsafePointer<Float>?, UnsafePointer<Float>?, Int32, Int32, Int32, Int32, Int32,
        UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int8>?,
        UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?
    ) -> Void

    let loaded: LoadedKernel
    let op: AtomQuantize.Op
    let entry: UnsafeMutableRawPointer
    /// How the variant loads reordered channels (nil: silu-mul-quantize).
    let gather: AtomQuantize.Gather?

    init(_ loaded: LoadedKernel, op: AtomQuantize.Op) throws {
        self.loaded = loaded
        self.op = op
        entry = try loaded.function("kernel", as: UnsafeMutableRawPointer.self)
        gather = AtomQuantize(op).gather(loaded.choice.configuration)
    }

    /// Bytes of the per-share `stage` buffer (`AtomQuantize.stageBytes`).
    func stageBytes(k: Int, outliers: Int) -> Int {
        AtomQuantize.stageBytes(k: k, outliers: outliers, gather: gather)
    }

    /// Units per row and each share's units of an m-row input (`AtomQuantize.shares`).
    func shares(m: Int, k: Int, outliers: Int) -> (parts: Int, units: [Range<Int>]) {
        AtomQuantize.shares(m: m, k: k, outliers: outliers, threads: loaded.int("threads"), rowBlock: gather?.rowBlock ?? 1)
    }

    var rmsNorm: RMSNorm { unsafeBitCast(entry, to: RMSNorm.self) }
    var reorder: Reorder { unsafeBitCast(entry, to: Reorder.self) }
    var siluMul: SiluMul { unsafeBitCast(entry, to: SiluMul.self) }
}
