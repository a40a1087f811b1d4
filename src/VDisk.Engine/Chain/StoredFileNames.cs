// File names that an image stores about other files (a qcow2 backing file name, a VMDK extent name or
// parentFileNameHint) become host paths only here. A name read from an image is data, not a path: it is
// checked (NUL bytes, bytes that are not UTF-8, over-long names, protocol and JSON specifications) and any
// failure is a VDiskException about the image that stores it, never a .NET exception from the path APIs.
// Names are escaped (control characters, length) before they appear in a message.
using System.Text;
using VDisk.Engine.Core;

namespace VDisk.Engine.Chain;

/// <summary>Validates and resolves file names stored inside images.</summary>
public static class StoredFileNames
{
    /// <summary>Longest name accepted, in UTF-8 bytes (Linux PATH_MAX, with its terminating NUL).</summary>
    public const int MaxNameBytes = 4095;
    private const int MaxShownChars = 160;

    /// <summary>
    /// The full path of the file that the image at <paramref name="imagePath"/> names <paramref name="stored"/>:
    /// absolute names as they are, relative ones against the image's folder. <paramref name="what"/> says which
    /// name it is ("backing file name", "extent file name on descriptor line 4"), for the message. Throws Corrupt
    /// for a name that cannot be a file name (<see cref="CheckWellFormed"/>), Unsupported for protocol and JSON
    /// specifications and for names that are not valid UTF-8.
    /// </summary>
    public static string Resolve(string imagePath, string stored, string what)
    {
        CheckWellFormed(imagePath, stored, what);
        if (stored.Contains('\uFFFD'))
            throw VDiskException.Unsupported(imagePath, $"the {what} '{Printable(stored)}' is not valid UTF-8, so it cannot be opened as a file name here.");
        if (stored.StartsWith("json:", StringComparison.Ordinal) || stored.Contains("://", StringComparison.Ordinal))
            throw VDiskException.Unsupported(imagePath, $"the {what} '{Printable(stored)}' is a protocol or JSON specification, which is not supported (only files are).");
        if (Path.IsPathRooted(stored)) return Path.GetFullPath(stored);
        string folder = Path.GetDirectoryName(Path.GetFullPath(imagePath)) ?? ".";
        return Path.GetFullPath(Path.Combine(folder, stored));
    }

    /// <summary>
    /// Throws a Corrupt error about <paramref name="imagePath"/> when <paramref name="stored"/> cannot be a file name
    /// in any image: empty, holding a NUL byte, or longer than <see cref="MaxNameBytes"/>.
    /// </summary>
    public static void CheckWellFormed(string imagePath, string stored, string what)
    {
        if (stored.Length == 0)
            throw VDiskException.Corrupt(imagePath, $"the {what} is empty.");
        int nul = stored.IndexOf('\0');
        if (nul >= 0)
            throw VDiskException.Corrupt(imagePath, $"the {what} '{Printable(stored)}' contains a NUL byte (at character {nul}), which no file name can hold.");
        int bytes = Encoding.UTF8.GetByteCount(stored);
        if (bytes > MaxNameBytes)
            throw VDiskException.Corrupt(imagePath, $"the {what} is {bytes} bytes long; file names are at most {MaxNameBytes} bytes ('{Printable(stored)}').");
    }

    /// <summary>
    /// True when <paramref name="fullPath"/> lies inside the folder of <paramref name="imagePath"/> (or a folder
    /// beneath it), comparing normalised paths: what a probed descriptor may name.
    /// </summary>
    public static bool IsInFolderOf(string imagePath, string fullPath)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(imagePath)) ?? ".";
        string relative = Path.GetRelativePath(folder, Path.GetFullPath(fullPath));
        return relative != ".." && !relative.StartsWith(".." + Path.DirectorySeparatorChar, StringComparison.Ordinal)
            && !Path.IsPathRooted(relative);
    }

    /// <summary>
    /// <paramref name="name"/> made safe to show in a message: control characters escaped (\n, \x1b, ...), and at
    /// most 160 characters (the rest elided with its length).
    /// </summary>
    public static string Printable(string name)
    {
        var sb = new StringBuilder(Math.Min(name.Length, MaxShownChars) + 16);
        foreach (char c in name)
        {
            if (sb.Length >= MaxShownChars)
            {
                sb.Append($"... ({name.Length} characters)");
                break;
            }
            sb.Append(c switch
            {
                '\0' => "\\0",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                _ when char.IsControl(c) => $"\\x{(int)c:x2}",
                _ => c.ToString(),
            });
        }
        return sb.ToString();
    }
}
