import Kernels

extension IntegerRows {
    /// Whether these rows fit gemm-w4a4's operand layout (`AtomQuantization.Quantized`): INT4 normal
    /// channels in whole groups of 128 (or one scale per row over K - O channels, a multiple of 128)
    /// and INT8 outliers.
    public var fitsAtomLayout: Bool {
        format.bits == 4 && normal % AtomQuantization.groupSize == 0
            && (format.groupSize == nil || format.groupSize == AtomQuantization.groupSize)
    }

    /// The rows in gemm-w4a4's layout: packed codes, one scale per group of 128 (a per-row scale is
    /// repeated in each of the row's groups, which gives the kernel's sum over groups exactly the
    /// per-row product), group code sums, outliers. Precondition: `fitsAtomLayout`.
    public func atomLayout() -> AtomQuantization.Quantized {
        precondition(fitsAtomLayout, "INT\(format.bits) rows with \(normal) normal channels in groups of \(groupLength) do not fit gemm-w4a4")
        let g = AtomQuantization.groupSize
        var q = AtomQuantization.Quantized(rows: rows, k: k, outliers: format.outliers)
        let groups = q.groups, ownGroups = self.groups
        for r in 0..<rows {
            let row = Array(codes[(r * normal)..<((r + 1) * normal)])
            q.codes.replaceSubrange((r * normal / 2)..<((r + 1) * normal / 2), with: AtomQuantization.pack(row))
            for j in 0..<groups {
                // The scale of the row's group that holds channels j*128 ..< (j+1)*128.
                q.scales[r * groups + j] = scales[r * ownGroups + (j * g) / groupLength]
                q.groupSums[r * groups + j] = row[(j * g)..<((j + 1) * g)].reduce(Int32(0)) { $0 + Int32($1) }
            }
        }
        q.outlierCodes = outlierCodes
        q.outlierScales = outlierScales
        return q
    }
}
