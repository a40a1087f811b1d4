// Target "qcow2": the header (with its extensions and backing name), the feature checks, the L1/L2 tables and
// refcount table as the driver opens them read-only, the whole mapping, compressed clusters (zlib and zstd),
// the snapshot table, and the first snapshot opened as a read-only view and walked in turn.
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Storage;

namespace VDisk.Fuzz.Targets;

/// <summary>Opens the input as a qcow2 image in memory and walks everything the driver reads.</summary>
public sealed class Qcow2Target : IFuzzTarget
{
    /// <summary>Snapshots opened and walked per input (each view reads the snapshot table again, and its own L1 table).</summary>
    public const int MaxSnapshotViews = 1;

    /// <inheritdoc/>
    public string Name => "qcow2";

    /// <inheritdoc/>
    public FuzzOutcome Execute(byte[] input, AllocationMeter meter)
    {
        using var driver = meter.Call("Qcow2Driver.Open", () => Qcow2Driver.Open(Storage(input), writable: false));
        meter.Call("Details", () => driver.Details);
        var (bytes, runs) = MappingWalk.Walk(driver, meter);
        var snapshots = meter.Call("Snapshots", () => driver.Snapshots);
        var outcome = new FuzzOutcome(null, driver.VirtualSize, bytes, runs + snapshots.Count);
        foreach (var snapshot in snapshots.Take(MaxSnapshotViews))
        {
            using var view = meter.Call($"OpenSnapshot({snapshot.Id})", () => Qcow2Driver.OpenSnapshot(Storage(input), snapshot.Id));
            outcome = outcome with { Runs = outcome.Runs + MappingWalk.Walk(view, meter).Runs };
        }
        return outcome;
    }

    private static MemoryStorage Storage(byte[] input) => new("fuzz.qcow2", input, canWrite: false);
}
