// In-memory qcow2 and raw images for fast property tests (no files, no qemu).
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Formats.Raw;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Tests.Support;

public static class MemoryImages
{
    /// <summary>A writable in-memory qcow2, optionally over a backing disk (which it then owns).</summary>
    /// <param name="tinyCaches">Metadata caches of four tables, so eviction and write-back order get exercised.</param>
    public static (VirtualDisk Disk, MemoryStorage Storage) Qcow2(long size, CreateOptions? options = null, VirtualDisk? backing = null, bool tinyCaches = false)
    {
        var storage = new MemoryStorage("mem.qcow2");
        options ??= new CreateOptions();
        Qcow2Creator.WriteEmpty(storage, options with { Size = size }, size, backing is null ? null : "backing", backing?.Format);
        long cache = tinyCaches ? 4L * options.ClusterSize : 32L << 20;
        var driver = Qcow2Driver.Open(storage, writable: true, cache, cache);
        return (new VirtualDisk("mem.qcow2", driver, backing, writable: true), storage);
    }

    /// <summary>A read-only in-memory raw disk holding <paramref name="content"/>.</summary>
    public static VirtualDisk Raw(byte[] content)
        => new("mem.raw", new RawDriver(new MemoryStorage("mem.raw", content, canWrite: false)), null, writable: false);

    /// <summary>Reopens an in-memory qcow2 from its bytes.</summary>
    public static VirtualDisk Reopen(byte[] bytes, VirtualDisk? backing = null, bool writable = false)
        => new("mem.qcow2", Qcow2Driver.Open(new MemoryStorage("mem.qcow2", bytes, writable), writable), backing, writable);
}
