import ArgumentParser
import Foundation
import Kernels

struct AccuracyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "accuracy",
        abstract: "Error against fp32 of W4A4 RTN, + INT8 outliers, + group-128, + clipping (Atom), and W8A8.",
        discussion: """
            Synthetic activations with a few outlier channels 20 to 100 times larger than the rest, weights \
            uniform in [-1, 1]/sqrt(K); channels reordered by activation energy as Atom's calibration does. \
            Error: ||Y_q - Y|| / ||Y|| of the matrix product, computed in double from dequantized values.
            """
    )

    @OptionGroup var global: GlobalOptions
    @Option(help: "Tokens (rows of activations).") var m: Int = 64
    @Option(help: "Output channels.") var n: Int = 256
    @Option(help: "Input channels (K - 128 must be a multiple of 128).") var k: Int = 4096
    @Option(help: "Injected outlier channels.") var outlierChannels: Int = 8
    @Option(help: "Seed.") var seed: UInt64 = 1

    func validate() throws {
        guard m > 0, n > 0, k > 256, (k - 128) % 128 == 0 else { throw ValidationError("need m, n > 0 and K - 128 a positive multiple of 128 (e.g. 4096)") }
        guard (0...k).contains(outlierChannels) else { throw ValidationError("--outlier-channels must be in 0...\(k)") }
    }

    func run() throws {
        _ = global.logger("lowbit.accuracy")
        let rows = AtomAccuracy.table(m: m, n: n, k: k, outlierChannels: outlierChannels, seed: seed)
        print("Quantization error of Y = X W^T against fp32: M = \(m), N = \(n), K = \(k), \(outlierChannels) outlier channels (20-100x)")
        var t = Table(["method", "relative error", "vs W4A4 RTN"], alignments: [.left, .right, .right])
        let base = rows.first?.relativeError ?? 1
        for r in rows {
            t.add([r.scheme, String(format: "%.5f", r.relativeError), String(format: "%.3fx", r.relativeError / base)])
        }
        print(t.render())
    }
}
