// What backing-chain operations change in a qcow2 image (qcow2.rst "Header": backing_file_offset/size, the backing
// format extension; qemu-img rebase and commit): pointing the image at another backing file, or none, once
// everything written before is durable. (A commit that makes a base take a bigger top's size uses Grow, in
// Qcow2Image.Resize.cs.)
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
    /// <paramref name="changesGuestContent"/> (an unsafe rebase) marks the bitmaps in use first; a switch to a backing
    /// file that reads the same (a safe rebase, a commit's top) leaves them valid.
    /// </summary>
    public void SetBacking(string? name, string? format, bool changesGuestContent)
    {
        lock (_lock)
        {
            CheckWritable();
            if (changesGuestContent) BeforeGuestChange();
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
}
