// Temporary outputs (DESIGN.md "Operations": a half-written output is removed). New and converted images are
// written to a hidden file beside the destination and renamed into place when complete. The file's name records
// its owner: the machine (machine id and pid namespace), the boot, the process id and that process's start time,
// so a reused process id cannot pass for the owner. A run that is killed (SIGKILL, or the host loses power)
// cannot remove its file, so every later run that writes into the folder removes the temporary files whose owner
// is gone. Files of another machine or container (a folder shared over NFS), and names VDisk did not make this
// way, are never touched; two live runs never remove each other's files.
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace VDisk.Engine.Operations;

/// <summary>Names temporary outputs after their owner, and removes those whose owner has ended.</summary>
internal static partial class TemporaryOutputs
{
    private const int MaxEmbeddedNameBytes = 150; // keeps the whole name under the usual 255-byte limit
    private const int StartTimeField = 22;        // proc(5): starttime, in clock ticks after boot

    private sealed record Owner(string Machine, string Boot, long Start);

    private static readonly Lazy<Owner?> Self = new(ReadSelf);

    [GeneratedRegex(@"^\..*\.vdisk-(?<machine>[0-9a-f]{8})-(?<boot>[0-9a-f]{8})-(?<pid>[0-9]{1,9})-(?<start>[0-9]{1,18})-[0-9a-f]{8}\.tmp$",
        RegexOptions.Singleline | RegexOptions.CultureInvariant)]
    private static partial Regex OwnedName();

    /// <summary>
    /// A new hidden name beside <paramref name="destination"/> (same folder, so the final rename stays on one file
    /// system): <c>.NAME.vdisk-MACHINE-BOOT-PID-START-NONCE.tmp</c>.
    /// </summary>
    public static string NameFor(string destination)
    {
        string folder = Path.GetDirectoryName(destination) ?? ".";
        var self = Self.Value ?? new Owner("00000000", "00000000", 0); // unknown owner: never judged stale
        string owner = $"{self.Machine}-{self.Boot}-{Environment.ProcessId}-{self.Start}-{RandomNumberGenerator.GetHexString(8, lowercase: true)}";
        return Path.Combine(folder, $".{Shorten(Path.GetFileName(destination))}.vdisk-{owner}.tmp");
    }

    /// <summary>
    /// Removes temporary outputs in <paramref name="folder"/> left by runs of this machine that have ended (the
    /// process is gone, its id now belongs to another process, or the machine has rebooted since). Returns the
    /// files removed. Does nothing where the owner of a file cannot be judged (not Linux).
    /// </summary>
    public static IReadOnlyList<string> RemoveStale(string folder)
    {
        var removed = new List<string>();
        if (Self.Value is not { } self) return removed;
        List<string> candidates;
        try
        {
            candidates = Directory.EnumerateFiles(folder, "*.tmp").ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return removed;
        }
        foreach (string file in candidates)
        {
            var match = OwnedName().Match(Path.GetFileName(file));
            if (!match.Success || match.Groups["machine"].Value != self.Machine) continue;
            bool sameBoot = match.Groups["boot"].Value == self.Boot;
            if (sameBoot && IsRunning(int.Parse(match.Groups["pid"].Value), long.Parse(match.Groups["start"].Value))) continue;
            try
            {
                File.Delete(file);
                removed.Add(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Another run removed it first, or it belongs to a user we cannot clean up after.
            }
        }
        return removed;
    }

    // True unless process `pid` is known to be gone or to be another process (a different start time).
    private static bool IsRunning(int pid, long start)
    {
        try
        {
            return StartTimeOf(File.ReadAllText($"/proc/{pid}/stat")) is not { } actual || actual == start;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return false;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return true; // cannot tell (/proc mounted with hidepid): leave the file alone
        }
    }

    private static Owner? ReadSelf()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            if (StartTimeOf(File.ReadAllText("/proc/self/stat")) is not { } start) return null;
            string boot = File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim().Replace("-", "", StringComparison.Ordinal);
            if (boot.Length < 8) return null;
            string machineId = File.Exists("/etc/machine-id") ? File.ReadAllText("/etc/machine-id").Trim() : string.Empty;
            if (machineId.Length == 0) machineId = Environment.MachineName;
            string pidNamespace = new FileInfo("/proc/self/ns/pid").LinkTarget ?? string.Empty;
            byte[] hash = SHA256.HashData(Encoding.UTF8.GetBytes($"{machineId}\n{pidNamespace}"));
            return new Owner(Convert.ToHexString(hash, 0, 4).ToLowerInvariant(), boot[..8].ToLowerInvariant(), start);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    // proc(5) stat: "pid (comm) state ..." where comm may hold spaces and parentheses; fields resume after the last ')'.
    private static long? StartTimeOf(string stat)
    {
        int close = stat.LastIndexOf(')');
        if (close < 0) return null;
        string[] fields = stat[(close + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        int index = StartTimeField - 3; // the first field after comm is field 3 (state)
        return index < fields.Length && long.TryParse(fields[index], out long start) ? start : null;
    }

    // At most MaxEmbeddedNameBytes of UTF-8, cut between characters.
    private static string Shorten(string name)
    {
        if (Encoding.UTF8.GetByteCount(name) <= MaxEmbeddedNameBytes) return name;
        var kept = new StringBuilder();
        int bytes = 0;
        foreach (var rune in name.EnumerateRunes())
        {
            bytes += rune.Utf8SequenceLength;
            if (bytes > MaxEmbeddedNameBytes) break;
            kept.Append(rune.ToString());
        }
        return kept.ToString();
    }
}
