// Target "vmdk-sparse": a hosted sparse extent ("KDMV") as the driver opens a monolithicSparse or
// streamOptimized file: header, embedded descriptor, footer and end-of-stream marker, grain directory and
// grain tables, then the whole mapping with compressed grains inflated. Inputs without the magic would take
// the descriptor-file path, which opens extent files on the host; the vmdk-descriptor target covers that text.
using System.Buffers.Binary;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Vmdk;
using VDisk.Engine.Storage;

namespace VDisk.Fuzz.Targets;

/// <summary>Opens the input as a one-file sparse VMDK in memory and walks it.</summary>
public sealed class VmdkSparseTarget : IFuzzTarget
{
    private const uint Magic = 0x564d444b; // "KDMV", little-endian

    /// <inheritdoc/>
    public string Name => "vmdk-sparse";

    /// <inheritdoc/>
    public FuzzOutcome Execute(byte[] input, AllocationMeter meter)
    {
        if (input.Length < 4 || BinaryPrimitives.ReadUInt32LittleEndian(input) != Magic)
            return FuzzOutcome.Rejected(new VDiskException(VDiskErrorKind.NotAnImage, "fuzz.vmdk", "not a sparse extent (no KDMV magic): not this target's input."));
        using var driver = meter.Call("VmdkDriver.Open", () => VmdkDriver.Open(new MemoryStorage("fuzz.vmdk", input, canWrite: false), writable: false));
        meter.Call("Details", () => driver.Details);
        meter.Call("Backing", () => driver.Backing);
        var (bytes, runs) = MappingWalk.Walk(driver, meter);
        return new FuzzOutcome(null, driver.VirtualSize, bytes, runs);
    }
}
