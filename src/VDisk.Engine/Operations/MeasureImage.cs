// The space a new image needs (qemu-img measure --output=json; QEMU block/qcow2.c qcow2_measure,
// qcow2_calc_prealloc_size and qcow2_refcount_metadata_size; block/raw-format.c raw_measure): for a converted copy of
// an existing image (its whole chain, flattened) or for a size alone. "Required" is the file size after a conversion,
// "fully allocated" the size with every cluster allocated; for a version 3 qcow2 destination and a qcow2 source the
// space of persistent bitmaps is given too. qemu-img 7.2 measures only for raw and qcow2 destinations.
using System.Numerics;
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;

namespace VDisk.Engine.Operations;

/// <summary>The destination to measure for, with qemu-img create's options and defaults.</summary>
public sealed record MeasureOptions
{
    /// <summary>The destination format: Raw (qemu-img's default) or Qcow2.</summary>
    public ImageFormat DestinationFormat { get; init; } = ImageFormat.Raw;
    /// <summary>qcow2 cluster size.</summary>
    public int ClusterSize { get; init; } = 65536;
    /// <summary>qcow2 refcount width in bits.</summary>
    public int RefcountBits { get; init; } = 16;
    /// <summary>qcow2 compat level, "0.10" or "1.1".</summary>
    public string Compat { get; init; } = "1.1";
    /// <summary>qcow2 preallocation: Falloc and Full count every data cluster as required.</summary>
    public Preallocation Preallocation { get; init; } = Preallocation.Off;
    /// <summary>The destination will have a backing file: every data cluster counts as required (qemu-img cannot tell what it shares).</summary>
    public bool HasBackingFile { get; init; }
    /// <summary>The source's format; null probes it.</summary>
    public ImageFormat? SourceFormat { get; init; }
    /// <summary>Measure this internal snapshot of the source (qemu-img measure -l).</summary>
    public string? Snapshot { get; init; }
}

/// <summary>What a destination needs.</summary>
/// <param name="RequiredBytes">File size of the destination written from the source (or empty, in size-only mode).</param>
/// <param name="FullyAllocatedBytes">File size with every cluster allocated.</param>
/// <param name="BitmapsBytes">Space for the source's persistent bitmaps (qcow2 to qcow2 version 3 only), else null.</param>
public sealed record MeasureResult(long RequiredBytes, long FullyAllocatedBytes, long? BitmapsBytes);

/// <summary>Measures the space images need.</summary>
public static class MeasureImage
{
    /// <summary>
    /// The space a <paramref name="options"/>.DestinationFormat image needs to hold the image at <paramref name="path"/>
    /// (its whole chain), or, with <paramref name="path"/> null, an empty image of <paramref name="size"/> bytes. VMDK and
    /// VDI destinations are Unsupported, as in qemu-img 7.2.
    /// </summary>
    public static MeasureResult Run(string? path, long? size, MeasureOptions options, CancellationToken cancel = default)
    {
        if ((path is null) == (size is null)) throw VDiskException.Invalid(path, "Measure either an image or a size, not both.");
        if (size < 0) throw VDiskException.Invalid(path, $"Size {size} is invalid.");
        if (options.DestinationFormat is not (ImageFormat.Raw or ImageFormat.Qcow2))
            throw VDiskException.Unsupported(path ?? FormatProbe.Name(options.DestinationFormat),
                $"qemu-img cannot measure the size of {FormatProbe.Name(options.DestinationFormat)} images (7.2 measures raw and qcow2 only), and VDisk gives the same answers.");
        if (path is null) return Measure(null, size!.Value, options, cancel);
        using var disk = ImageChain.Open(path, new OpenOptions { Format = options.SourceFormat, Snapshot = options.Snapshot, ForceShare = true });
        return Measure(disk, disk.Length, options, cancel);
    }

    private static MeasureResult Measure(VirtualDisk? source, long size, MeasureOptions options, CancellationToken cancel)
    {
        if (options.DestinationFormat == ImageFormat.Raw)
        {
            long raw = source?.Length ?? (size + 511) / 512 * 512;
            return new MeasureResult(raw, raw, null);
        }
        Qcow2Creator.Validate(new CreateOptions
        {
            Size = size, ClusterSize = options.ClusterSize, RefcountBits = options.RefcountBits, Compat = options.Compat,
            Preallocation = options.Preallocation,
        }, source?.Path ?? "measure");
        long cs = options.ClusterSize;
        long virtualSize = (size + cs - 1) / cs * cs;
        long required = source is null ? 0 : options.HasBackingFile ? virtualSize : DataClusterBytes(source, cs, cancel);
        if (options.Preallocation is Preallocation.Falloc or Preallocation.Full) required = virtualSize;
        long fully = FullyAllocated(virtualSize, cs, BitOperations.Log2((uint)options.RefcountBits));
        bool bitmaps = options.Compat != "0.10" && source?.Driver is Qcow2Driver { Header.Version: >= 3 } qcow2 && NoBitmaps(qcow2);
        return new MeasureResult(fully - virtualSize + required, fully, bitmaps ? 0 : null);
    }

    // qcow2_measure's loop: every cluster that holds data somewhere in the chain (zero ranges skipped), counting the
    // cluster a data range starts in from its beginning and rounding each data range up to a whole cluster.
    private static long DataClusterBytes(VirtualDisk source, long cs, CancellationToken cancel)
    {
        long required = 0;
        for (long offset = 0, length; offset < source.Length; offset += length)
        {
            cancel.ThrowIfCancellationRequested();
            var status = MapImage.Status(source, offset, source.Length - offset);
            length = status.Length;
            if (status.Zero || !(status.Data && status.Present)) continue;
            length = (offset + length + cs - 1) / cs * cs - offset;
            required += offset % cs + length;
        }
        return required;
    }

    // qcow2_calc_prealloc_size: header, L2 tables, L1 table, refcount structures, data.
    private static long FullyAllocated(long virtualSize, long cs, int refcountOrder)
    {
        long meta = cs;
        long l2Entries = (virtualSize / cs + cs / 8 - 1) / (cs / 8) * (cs / 8);
        meta += l2Entries * 8;
        long l1Entries = (l2Entries * 8 / cs + cs / 8 - 1) / (cs / 8) * (cs / 8);
        meta += l1Entries * 8;
        meta += RefcountMetadataSize((meta + virtualSize) / cs, cs, refcountOrder);
        return meta + virtualSize;
    }

    // qcow2_refcount_metadata_size without the generous increase: the fixed point of blocks and table clusters that
    // count every cluster, themselves included.
    private static long RefcountMetadataSize(long clusters, long cs, int refcountOrder)
    {
        long perTableCluster = cs / 8, perBlock = cs * 8 / (1L << refcountOrder);
        long table = 0, blocks = 0, n = 0, last;
        do
        {
            last = n;
            blocks = (clusters + table + blocks + perBlock - 1) / perBlock;
            table = (blocks + perTableCluster - 1) / perTableCluster;
            n = clusters + blocks + table;
        }
        while (n != last);
        return (blocks + table) * cs;
    }

    // Bitmaps count only when the autoclear bit vouches for them; without it QEMU ignores the extension, and so 0.
    private static bool NoBitmaps(Qcow2Driver source)
    {
        if ((source.Header.AutoclearFeatures & Qcow2Features.Bitmaps) != 0 && source.Header.Extensions.Any(e => e.Type == Qcow2HeaderExtension.BitmapsType))
            throw VDiskException.Unsupported(source.Storage.Name, "the image has persistent dirty bitmaps, whose size VDisk cannot measure yet.");
        return true;
    }
}
