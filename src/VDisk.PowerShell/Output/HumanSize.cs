// Byte counts as people read them ("20 GiB"), used by the table views in VDisk.format.ps1xml.
// Output objects keep exact bytes; only the views call this.
using System.Globalization;

namespace VDisk.PowerShell;

/// <summary>Formats byte counts with binary units, as qemu-img does.</summary>
public static class HumanSize
{
    private static readonly string[] Units = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };

    /// <summary>
    /// The size in the largest binary unit that keeps the number at least 1, with up to two decimals:
    /// 21474836480 gives "20 GiB", 1536 gives "1.5 KiB", 0 gives "0 B". Null gives an empty string.
    /// </summary>
    public static string Format(long? bytes)
    {
        if (bytes is not { } value) return string.Empty;
        double scaled = Math.Abs((double)value);
        int unit = 0;
        while (scaled >= 1024 && unit < Units.Length - 1)
        {
            scaled /= 1024;
            unit++;
        }
        string sign = value < 0 ? "-" : string.Empty;
        return sign + scaled.ToString("0.##", CultureInfo.InvariantCulture) + " " + Units[unit];
    }
}
