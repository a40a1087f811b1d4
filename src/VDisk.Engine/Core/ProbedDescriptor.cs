// Whether a file that starts like a VMDK text descriptor can be one (see FormatProbe). A descriptor file is
// short text: QEMU reads at most 1 MiB - 1 of it, and real ones are a few KiB. A raw disk whose guest wrote
// descriptor text into its first sector is neither: it is larger, or it holds binary data after the text.
// Such a file is read as raw, and the user is told how to choose the format, in the words qemu-img uses
// when it guesses raw ("Image format was not specified for ... and probing guessed raw").
using VDisk.Engine.Formats.Vmdk;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Core;

/// <summary>Plausibility of a probed VMDK text descriptor.</summary>
internal static class ProbedDescriptor
{
    /// <summary>
    /// Why the file cannot be a descriptor file, or null when it can: a descriptor is at most 1 MiB - 1 bytes of text
    /// (no control bytes but \t \n \v \f \r), optionally padded with NUL bytes to its end (QEMU pads the descriptor
    /// when it rewrites the CID).
    /// </summary>
    public static string? Implausibility(IStorage storage, long length)
    {
        if (length > VmdkDescriptor.MaxBytes)
            return $"the file is {length} bytes, larger than a descriptor file can be ({VmdkDescriptor.MaxBytes} bytes)";
        var bytes = new byte[length];
        storage.ReadAt(0, bytes);
        int end = Array.IndexOf(bytes, (byte)0);
        var text = end < 0 ? bytes.AsSpan() : bytes.AsSpan(0, end);
        int control = text.IndexOfAnyInRange((byte)0x01, (byte)0x08);
        if (control < 0) control = text.IndexOfAnyInRange((byte)0x0e, (byte)0x1f);
        if (control >= 0)
            return $"the file holds binary data (byte 0x{text[control]:x2} at offset {control}), which a descriptor cannot";
        int afterPadding = end < 0 ? -1 : bytes.AsSpan(end).IndexOfAnyExcept((byte)0);
        return afterPadding < 0 ? null
            : $"the file holds data after the descriptor text and its NUL padding (at offset {end + afterPadding}), which a descriptor file cannot";
    }

    /// <summary>The warning for a descriptor-like file read as raw.</summary>
    public static string GuessedRawWarning(string path, string why) =>
        $"Image format was not specified for '{path}' and probing guessed raw: its first sector reads like a VMDK descriptor, " +
        $"but {why}. A guest can write such text into its own disk, so VDisk does not follow it. " +
        "Specify the format to remove this warning: raw for a raw disk, or vmdk only if the file really is a descriptor you trust " +
        "(-SourceFormat for Convert-VDisk, -Format for Get-VDisk and Get-VDiskChain, -FirstFormat/-SecondFormat for Compare-VDisk, -BackingFormat for New-VDisk).";
}
