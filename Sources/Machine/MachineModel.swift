import Foundation
import Logging

/// Everything lowbit knows about the machine it runs on: the value `lowbit machine` prints and tuning
/// results are stored under.
public struct MachineDescription: Codable, Sendable, Equatable {
    public var cpu: CPUIdentity
    public var topology: Topology
    public var isa: ISAFeatures
    public var fingerprint: MachineFingerprint
    public var bindingSupport: BindingSupport
    /// The outcome of binding a thread to the first PU, tried while describing the machine.
    public var bindingTrial: BindingOutcome?
    public var counters: CounterAvailability
}

/// The loaded machine model: the hwloc topology handle plus its description.
public final class MachineModel: Sendable {
    public let hwloc: HwlocTopology
    public let description: MachineDescription

    /// Loads the topology, probes ISA features and counters, and tries binding once (on a scratch
    /// thread, so the caller's own binding is untouched).
    public init(logger: Logger = Logger(label: "lowbit.machine")) throws {
        let hwloc = try HwlocTopology()
        let topology = hwloc.snapshot()
        logger.debug("hwloc API \(topology.hwlocAPIVersion): \(topology.pus.count) PUs, \(topology.caches.count) caches")
        let isa = try ISAFeatures.detect()
        let cpu = CPUIdentity.detect(topology: topology)
        let support = hwloc.bindingSupport
        let trial = Self.tryBinding(hwloc, pu: topology.pus.first)
        if let trial { logger.debug("binding trial: \(trial.status)") }
        let counters = CounterAvailability.probe()
        logger.debug("counters: \(counters.summary)")
        self.hwloc = hwloc
        self.description = MachineDescription(
            cpu: cpu, topology: topology, isa: isa,
            fingerprint: MachineFingerprint(cpu: cpu, isa: isa, topology: topology),
            bindingSupport: support, bindingTrial: trial, counters: counters)
    }

    private static func tryBinding(_ hwloc: HwlocTopology, pu: Int?) -> BindingOutcome? {
        guard let pu else { return nil }
        final class Box: @unchecked Sendable { var outcome: BindingOutcome? }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            box.outcome = try? hwloc.bindCurrentThread(to: [pu])
            done.signal()
        }
        thread.start()
        done.wait()
        return box.outcome
    }
}
