// Target "vdi": the VDI pre-header and header (every field validated against the file length) and the block
// map (entries checked against blocks_allocated and for sharing), opened read-only, then the whole mapping.
using VDisk.Engine.Formats.Vdi;
using VDisk.Engine.Storage;

namespace VDisk.Fuzz.Targets;

/// <summary>Opens the input as a VDI image in memory and walks its block map.</summary>
public sealed class VdiTarget : IFuzzTarget
{
    /// <inheritdoc/>
    public string Name => "vdi";

    /// <inheritdoc/>
    public FuzzOutcome Execute(byte[] input, AllocationMeter meter)
    {
        using var driver = meter.Call("VdiDriver.Open", () => VdiDriver.Open(new MemoryStorage("fuzz.vdi", input, canWrite: false), writable: false));
        meter.Call("Details", () => driver.Details);
        var (bytes, runs) = MappingWalk.Walk(driver, meter);
        return new FuzzOutcome(null, driver.VirtualSize, bytes, runs);
    }
}
