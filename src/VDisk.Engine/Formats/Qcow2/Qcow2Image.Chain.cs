// What backing-chain operations change in a qcow2 image (qcow2.rst "Header": backing_file_offset/size, the backing
// format extension, size; qemu-img rebase and commit): pointing the image at another backing file, or none, once
// everything written before is durable; and growing the disk when a commit makes a base take a bigger top's size.
using VDisk.Engine.Core;

namespace VDisk.Engine.Formats.Qcow2;

internal sealed partial class Qcow2Image
{
    /// <summary>
    /// Records <paramref name="name"/> (as stored: relative to the image's folder or absolute) and its
    /// <paramref name="format"/> as the backing file, or none when <paramref name="name"/> is null. Every guest write and
    /// metadata change made before is durable first, so the new reference never publishes data that is not there.
    /// The format extension is rewritten where it is, or appended after the others, so no other extension moves
    /// (see <see cref="Qcow2HeaderLayout"/>); without a backing file it stays, unread, as QEMU leaves it.
    /// </summary>
    public void SetBacking(string? name, string? format)
    {
        lock (_lock)
        {
            CheckWritable();
            WriteBackAll(); // the header update's first barrier makes this and every guest write durable before the switch
            _header.Update(h =>
            {
                h.BackingFile = name;
                if (name is null) return;
                int at = h.Extensions.FindIndex(e => e.Type == Qcow2HeaderExtension.BackingFormatType);
                if (format is null)
                {
                    if (at >= 0) h.Extensions.RemoveAt(at);
                    return;
                }
                var extension = Qcow2HeaderExtension.FromText(Qcow2HeaderExtension.BackingFormatType, format);
                if (at >= 0) h.Extensions[at] = extension;
                else h.Extensions.Add(extension);
            });
        }
    }

    /// <summary>
    /// Grows the disk to <paramref name="size"/> bytes: the L1 table moves if it must; with
    /// <paramref name="zeroNewClusters"/> (a version 3 image whose backing file would otherwise show through) every whole
    /// cluster past the old end is made to read as zeroes first; the new size is published last, durably.
    /// </summary>
    public void Grow(long size, bool zeroNewClusters)
    {
        lock (_lock)
        {
            CheckWritable();
            long old = Header.Size;
            if (size <= old) return;
            if (zeroNewClusters && Header.Version < 3)
                throw VDiskException.Unsupported(Storage.Name, "a version 2 (compat 0.10) image cannot grow over a larger backing file: the backing file would show through past its old end.");
            long entries = Qcow2Header.RequiredL1Size(size, Geometry.ClusterBits);
            if (entries > Active.L1.Count) GrowL1(checked((int)entries));
            if (zeroNewClusters)
            {
                long first = (old + Geometry.ClusterSize - 1) >> Geometry.ClusterBits;
                long end = (size + Geometry.ClusterSize - 1) >> Geometry.ClusterBits;
                if (end > first) Active.Update(first, end - first, (_, _) => Qcow2Entries.ZeroFlag);
            }
            WriteBackAll(); // durable at the header update's first barrier, before the new size exposes the zeroed clusters
            _header.Update(h => h.Size = size);
        }
    }
}
