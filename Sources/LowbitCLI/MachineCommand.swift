import ArgumentParser
import Foundation
import Machine
import Measure

struct MachineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "machine",
        abstract: "Describe this machine: caches, cores, NUMA, ISA, binding, counters, fingerprint.",
        discussion: "The fingerprint is the key tuning results are stored under; see the README for what goes into it."
    )

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Print the description as JSON (stable keys, for scripts).")
    var json = false

    @Flag(help: ArgumentHelp(
        "Also measure load latency against working-set size (one thread, a few seconds) and compare it with the caches the CPU reports.",
        discussion: "With --json the description gains a \"latency\" key."))
    var latency = false

    func run() throws {
        let logger = global.logger("lowbit.machine")
        let model = try MachineModel(logger: logger)
        let topology = model.description.topology
        // One core's view: measured on the first PU, bound there where the binding holds.
        let curve = latency ? LatencyCurve.measure(topology: topology, hwloc: model.hwloc) : nil
        if json {
            if let curve {
                struct WithLatency: Encodable {
                    let machine: MachineDescription
                    let latency: LatencyCurve
                }
                print(try JSONOutput.encode(WithLatency(machine: model.description, latency: curve)))
            } else {
                print(try JSONOutput.encode(model.description))
            }
        } else {
            print(MachineReport(model.description).text)
            if let curve { print("\n" + MachineReport.latencyText(curve, topology: topology)) }
        }
    }
}

struct CountersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "counters",
        abstract: "List every performance event lowbit tries: available or not, and why.",
        discussion: """
            Each event is added to a PAPI event set, started and stopped. Events PAPI cannot count fall \
            back to the OS where one exists (thread CPU time, getrusage). A short sample measurement of \
            a fixed amount of work shows the values and their status.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Print the probe results as JSON.")
    var json = false

    @Flag(help: "Measure the sample with all PAPI events in one multiplexed set (values become estimates).")
    var multiplex = false

    @Flag(help: "Skip the sample measurement.")
    var noSample = false

    func run() throws {
        let logger = global.logger("lowbit.counters")
        let availability = CounterAvailability.probe()
        logger.debug("PAPI status: \(availability.papi)")
        if json {
            print(try JSONOutput.encode(availability))
            return
        }
        print(CountersReport.probeTable(availability))
        guard !noSample else { return }
        let counters = try Counters(multiplex: multiplex, availability: availability)
        let sample = try counters.measure { SampleWork.run(iterations: 20_000_000) }
        print("")
        print(CountersReport.sampleTable(sample, multiplexed: multiplex))
    }
}

/// A fixed amount of scalar work whose result is used, so the compiler cannot drop it.
enum SampleWork {
    static func run(iterations: Int) -> UInt64 {
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        for i in 0..<iterations {
            x ^= x << 13
            x ^= x >> 7
            x ^= x << 17
            x &+= UInt64(truncatingIfNeeded: i)
        }
        return x
    }
}

enum JSONOutput {
    static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
