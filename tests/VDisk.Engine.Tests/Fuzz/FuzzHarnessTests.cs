// The fuzz harness can fail: an engine call over the allocation budget, and mapping answers that break the driver
// contract (an empty run, a run longer than asked, a data run without storage), are findings, not passes.
using VDisk.Engine.Core;
using VDisk.Engine.Storage;
using VDisk.Fuzz;

namespace VDisk.Engine.Tests.Fuzz;

public class FuzzHarnessTests
{
    [Fact]
    public void AnEngineCallOverTheBudgetIsAFinding()
    {
        var meter = new AllocationMeter(1 << 20);
        Assert.Equal(1000, meter.Call("small", () => new byte[1000]).Length);
        var e = Assert.Throws<FuzzFinding>(() => meter.Call("large", () => new byte[2 << 20]));
        Assert.Contains("large allocated 2 MiB", e.Message);
        Assert.True(meter.Total >= 2 << 20);
    }

    [Fact]
    public void TheBudgetIsCheckedWhenTheCallFailsToo()
    {
        var meter = new AllocationMeter(1 << 20);
        Assert.Throws<FuzzFinding>(() => meter.Call("alloc then refuse", () =>
        {
            GC.KeepAlive(new byte[2 << 20]);
            throw VDiskException.Corrupt("x", "refused after allocating");
        }));
        Assert.Throws<VDiskException>(() => meter.Call("refuse", () => throw VDiskException.Corrupt("x", "refused")));
    }

    [Fact]
    public void AWellBehavedDriverIsWalkedToTheEnd()
    {
        var driver = new ScriptedDriver(1 << 20, (offset, max) => new Mapping(ExtentKind.Unallocated, Math.Min(max, 4096)));
        var (bytes, runs) = MappingWalk.Walk(driver, new AllocationMeter(FuzzTargets.AllocationBudget));
        Assert.Equal((1L << 20, 256), (bytes, runs));
    }

    [Theory]
    [InlineData(0L, ExtentKind.Zero, "of 0 bytes")]
    [InlineData(1L << 21, ExtentKind.Unallocated, "of 2097152 bytes")]
    [InlineData(512L, ExtentKind.Data, "data run")]
    public void ABrokenMappingIsAFinding(long length, ExtentKind kind, string message)
    {
        var driver = new ScriptedDriver(1 << 20, (_, _) => new Mapping(kind, length));
        var e = Assert.Throws<FuzzFinding>(() => MappingWalk.Walk(driver, new AllocationMeter(FuzzTargets.AllocationBudget)));
        Assert.Contains(message, e.Message);
    }

    private sealed class ScriptedDriver(long size, Func<long, long, Mapping> map) : IImageDriver
    {
        public ImageFormat Format => ImageFormat.Raw;
        public IStorage Storage { get; } = new MemoryStorage();
        public long VirtualSize => size;
        public int ClusterSize => 512;
        public BackingReference? Backing => null;
        public FormatDetails Details => new();
        public Mapping Map(long guestOffset, long maxLength) => map(guestOffset, maxLength);
        public void ReadCompressed(long guestOffset, Span<byte> destination) => throw new NotSupportedException();
        public HostRun Allocate(long guestOffset, long length) => throw new NotSupportedException();
        public void Link(long guestOffset, HostRun run) => throw new NotSupportedException();
        public long ZeroClusters(long guestOffset, long length, bool unmap) => throw new NotSupportedException();
        public void Flush() { }
        public void Dispose() { }
    }
}
