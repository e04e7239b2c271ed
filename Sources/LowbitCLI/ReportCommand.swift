import ArgumentParser
import Foundation
import Machine
import TuningStore

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write a self-contained HTML report (inline SVG and CSS) of this machine's ceilings and tuned results, with the charts as SVG files beside it.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var database: DatabaseOptions
    @Option(help: "Directory to write report.html and the SVG figures into.") var out: String = "Plots"
    @Option(help: "Machine fingerprint (default: this machine).") var machine: String?

    func run() throws {
        let logger = global.logger("lowbit.report")
        let store = try database.openExisting(logger: logger)
        let fingerprint = try machine ?? MachineModel(logger: logger).description.fingerprint.id
        guard let record = try store.machine(fingerprint) else {
            throw ValidationError("no machine \(fingerprint) in \(database.path); run `lowbit roofline measure` or `lowbit tune` first")
        }
        let builder = try ReportBuilder(store: store, machine: record)
        let dir = URL(fileURLWithPath: out, isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var written: [String] = []
        func svg(_ name: String, _ text: String) throws {
            try Data(text.utf8).write(to: dir.appendingPathComponent(name), options: .atomic)
            written.append(name)
        }
        if !builder.ceilings.isEmpty {
            try svg("bandwidth.svg", builder.bandwidthChart().render())
            if !builder.rows.isEmpty { try svg("roofline.svg", builder.rooflineChart().render()) }
            if let c = builder.latencyChart() { try svg("latency.svg", c.render()) }
        }
        if let c = builder.batchChart() { try svg("throughput-vs-batch.svg", c.render()) }
        if let c = builder.convergenceChart() { try svg("convergence.svg", c.render()) }
        if let c = builder.servingChart() { try svg("serving.svg", c.render()) }
        let page = dir.appendingPathComponent("report.html")
        try builder.html(generator: "lowbit \(Lowbit.configuration.version)").write(to: page)
        print("report: \(page.path)")
        if !written.isEmpty { print("figures: \(written.map { dir.appendingPathComponent($0).path }.joined(separator: ", "))") }
    }
}
