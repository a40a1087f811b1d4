// The allocation map of an image through its backing chain (qemu-img map --output=json; QEMU qemu-img.c img_map and
// get_block_status, block/io.c bdrv_co_block_status). Each range says which layer decides its content (Depth),
// whether that layer holds it (Present), whether it reads as zeroes (Zero) or holds data (Data, also compressed),
// and where the bytes are (Offset in File) when they are stored plainly. The flags follow QEMU's rules per format:
// a range no layer holds is not present and reads as zeroes at the last layer looked at (or where a backing file
// ends); VDI reports its unallocated blocks as present zeroes; a raw file's holes are present zeroes at their offset;
// a metadata-preallocated qcow2 image's data clusters in holes of its file read as zeroes. Neighbouring ranges that
// agree (and whose offsets follow on) are merged, as qemu-img merges them.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Formats.Raw;
using VDisk.Engine.Formats.Vdi;

namespace VDisk.Engine.Operations;

/// <summary>One range of an allocation map.</summary>
/// <param name="Start">Guest offset of the first byte.</param>
/// <param name="Length">Bytes covered.</param>
/// <param name="Depth">The layer that decides the content: 0 is the image, 1 its backing file, ...</param>
/// <param name="Present">That layer holds the range (it does not fall through to a backing file or read as zeroes by default).</param>
/// <param name="Zero">The range reads as zeroes.</param>
/// <param name="Data">The range holds data (stored, possibly compressed).</param>
/// <param name="Compressed">The data is stored compressed (qcow2, streamOptimized VMDK).</param>
/// <param name="Offset">Where the bytes are in <paramref name="File"/>, when they are stored plainly; else null.</param>
/// <param name="File">The file holding the bytes at <paramref name="Offset"/>; null without an offset.</param>
public sealed record MapRange(long Start, long Length, int Depth, bool Present, bool Zero, bool Data, bool Compressed, long? Offset, string? File);

/// <summary>Maps where the data of an image lies.</summary>
public static class MapImage
{
    /// <summary>
    /// The allocation map of the image at <paramref name="path"/> and its backing chain, merged into the fewest ranges, in
    /// guest order. Reads without locking (like qemu-img map -U). The image stays open while the sequence is enumerated.
    /// </summary>
    public static IEnumerable<MapRange> Run(string path, ImageFormat? format = null, CancellationToken cancel = default)
    {
        using var disk = ImageChain.Open(path, new OpenOptions { Format = format, ForceShare = true });
        MapRange? pending = null;
        for (long offset = 0; offset < disk.Length;)
        {
            cancel.ThrowIfCancellationRequested();
            var next = Status(disk, offset, disk.Length - offset);
            offset += next.Length;
            if (pending is null) pending = next;
            else if (Mergeable(pending, next)) pending = pending with { Length = pending.Length + next.Length };
            else
            {
                yield return pending;
                pending = next;
            }
        }
        if (pending != null) yield return pending;
    }

    private static bool Mergeable(MapRange a, MapRange b) =>
        a.Depth == b.Depth && a.Present == b.Present && a.Zero == b.Zero && a.Data == b.Data && a.Compressed == b.Compressed
        && a.File == b.File && (a.Offset is null ? b.Offset is null : b.Offset == a.Offset + a.Length);

    /// <summary>What the chain says about the run at <paramref name="offset"/> (one unmerged range), as qemu's block status does.</summary>
    internal static MapRange Status(VirtualDisk disk, long offset, long maxLength) => Status(disk, 0, offset, maxLength);

    // What the layer at `depth` says about the run at `offset`, looking further down where it holds nothing.
    private static MapRange Status(VirtualDisk layer, int depth, long offset, long maxLength)
    {
        var m = layer.Driver.Map(offset, maxLength);
        switch (m.Kind)
        {
            case ExtentKind.Data:
                return DataRange(layer, depth, offset, m);
            case ExtentKind.Compressed:
                return new MapRange(offset, m.Length, depth, true, false, true, true, null, null);
            case ExtentKind.Zero when layer.Driver is Qcow2Driver qcow2:
                var (host, length) = qcow2.ZeroClusters(offset, m.Length);
                return new MapRange(offset, length, depth, true, true, false, false, host, host is null ? null : qcow2.Storage.Name);
            case ExtentKind.Zero when m.Storage is null:
                return new MapRange(offset, m.Length, depth, true, true, false, false, null, null);
            case ExtentKind.Zero: // a hole in a raw file (zeroes at their offset) or in a flat VMDK extent (data QEMU finds zero)
                return new MapRange(offset, m.Length, depth, true, true, layer.Driver is not RawDriver, false, m.HostOffset, m.Storage.Name);
        }
        if (layer.Driver is VdiDriver) return new MapRange(offset, m.Length, depth, true, true, false, false, null, null); // QEMU's vdi says zero
        if (layer.Backing is not { } below || offset >= below.Length)
            return new MapRange(offset, m.Length, depth, false, true, false, false, null, null);
        return Status(below, depth + 1, offset, Math.Min(m.Length, below.Length - offset));
    }

    // Stored data. Where QEMU asks the host file too (a metadata-preallocated qcow2 image, a static VDI image), the
    // file's holes, and what lies past its end, read as zeroes.
    private static MapRange DataRange(VirtualDisk layer, int depth, long offset, Mapping m)
    {
        long length = m.Length;
        bool zero = false;
        if (layer.Driver is Qcow2Driver { } qcow2 && qcow2.LooksMetadataPreallocated() || layer.Driver is VdiDriver { IsStatic: true })
        {
            if (m.HostOffset >= m.Storage!.Length) zero = true;
            else if (m.Storage.TryGetExtent(m.HostOffset, out bool isData, out long extent) && extent > 0)
            {
                zero = !isData;
                length = Math.Min(length, extent);
            }
        }
        return new MapRange(offset, length, depth, true, zero, true, false, m.HostOffset, m.Storage!.Name);
    }
}
