// The machinery behind Mount-VDisk / Dismount-VDisk (issue 12), all userspace: the image is served by an in-process,
// read-only NbdServer on a Unix socket in a private temp folder (mode 0700), nbdfuse exposes that export as the file
// <private>/nbd/disk.raw, and fuse2fs mounts each ext2/3/4 partition of it read-only at <MountPath>/p<N>; other file
// systems are mounted by the kernel from a read-only loop device over disk.raw (LoopMount: losetup --read-only
// --offset --sizelimit, mount -o ro) where this process may do so.
//
// State (decided for stale-mount cleanup): a marker file <MountPath>/.vdisk-mount.json written before the first
// process starts and rewritten after each one, holding the owner (this process' pid and start time), the private
// folder, every mount point, every pid started and every folder created. A later Mount-VDisk or Dismount-VDisk on the
// same MountPath whose owner is gone (a killed session), or is this process without the mount in its registry (a
// teardown that failed half-way), tears it down from the marker: `umount` (then lazy `-l`) each loop mount and
// `losetup -d` each loop device whose backing file is in the private folder, `fusermount3 -u` (then lazy
// `-u -z`) each FUSE mount point ("Transport endpoint is not connected" ones too), SIGTERM then SIGKILL to each recorded
// pid still running whose command line names the private folder (never a process by name, never a reused pid), the
// created folders (only when empty) and the private folder removed, and the marker deleted.
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using VDisk.Engine.Nbd;

namespace VDisk.PowerShell.Commands;

/// <summary>What a mount left on disk for its own cleanup (the marker file's content).</summary>
internal sealed class MountState
{
    public int OwnerPid { get; set; }
    public string OwnerStart { get; set; } = "";
    public string Image { get; set; } = "";
    public string MountPath { get; set; } = "";
    public string PrivateFolder { get; set; } = "";
    public List<string> PartitionMounts { get; set; } = new();
    public string NbdMount { get; set; } = "";
    public List<int> FusePids { get; set; } = new();
    public int NbdFusePid { get; set; }
    public List<string> CreatedFolders { get; set; } = new();
    public List<string> LoopMounts { get; set; } = new();
    public List<string> LoopDevices { get; set; } = new();
}

/// <summary>A failure of an external tool (nbdfuse, fuse2fs, fusermount3, losetup, mount).</summary>
internal sealed class MountToolException : Exception
{
    public MountToolException(string message) : base(message) { }
}

/// <summary>One image mounted through nbdfuse and fuse2fs; its processes, server and folders, and their teardown.</summary>
internal sealed class MountSession
{
    public const string MarkerName = ".vdisk-mount.json";
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(15);
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    private readonly List<Process> _processes = new();
    private readonly object _gate = new();

    private readonly CancellationToken _cancellation;

    public MountSession(string image, string mountPath, string privateFolder, CancellationToken cancellation = default)
    {
        _cancellation = cancellation;
        State = new MountState
        {
            OwnerPid = Environment.ProcessId,
            OwnerStart = ProcessStartTicks(Environment.ProcessId) ?? "",
            Image = image,
            MountPath = mountPath,
            PrivateFolder = privateFolder,
            NbdMount = System.IO.Path.Combine(privateFolder, "nbd"),
        };
    }

    public MountState State { get; }
    public NbdServer? Server { get; set; }
    public string Socket => System.IO.Path.Combine(State.PrivateFolder, "nbd.sock");
    public string DiskFile => System.IO.Path.Combine(State.NbdMount, "disk.raw");
    public string MarkerPath => MarkerFile(State.MountPath);
    public IReadOnlyList<int> Pids
    {
        get
        {
            lock (_gate) return (State.NbdFusePid != 0 ? new[] { State.NbdFusePid } : Array.Empty<int>()).Concat(State.FusePids).ToList();
        }
    }

    public static string MarkerFile(string mountPath) => System.IO.Path.Combine(mountPath, MarkerName);

    /// <summary>Writes the marker (atomically: a temp file renamed over it).</summary>
    public void SaveState()
    {
        string temp = MarkerPath + ".tmp";
        lock (_gate) File.WriteAllText(temp, JsonSerializer.Serialize(State, Json));
        File.Move(temp, MarkerPath, overwrite: true);
    }

    /// <summary>The marker of <paramref name="mountPath"/>, or null when there is none or it cannot be read.</summary>
    public static MountState? ReadState(string mountPath)
    {
        try
        {
            return JsonSerializer.Deserialize<MountState>(File.ReadAllText(MarkerFile(mountPath)));
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>True when the process that wrote <paramref name="state"/> still runs (same pid and start time).</summary>
    public static bool OwnerAlive(MountState state) =>
        state.OwnerPid > 0 && ProcessStartTicks(state.OwnerPid) is { } start && start == state.OwnerStart;

    /// <summary>Starts nbdfuse on the export and waits until disk.raw is there.</summary>
    public void StartNbdFuse(string nbdfuse)
    {
        Directory.CreateDirectory(State.NbdMount);
        var process = Start(nbdfuse, "-r", DiskFile, $"nbd+unix:///?socket={Socket}");
        lock (_gate) State.NbdFusePid = process.Id;
        SaveState();
        WaitUntil(process, "nbdfuse", () => IsMountPoint(State.NbdMount) && File.Exists(DiskFile));
    }

    /// <summary>Mounts the ext2/3/4 file system at <paramref name="offset"/> of disk.raw read-only on <paramref name="folder"/>.</summary>
    public void StartFuse2fs(string fuse2fs, long offset, string folder)
    {
        lock (_gate) State.PartitionMounts.Add(folder);
        var process = Start(fuse2fs, "-f", "-o", $"ro,fakeroot,offset={offset}", DiskFile, folder);
        lock (_gate) State.FusePids.Add(process.Id);
        SaveState();
        WaitUntil(process, "fuse2fs", () => IsMountPoint(folder));
    }

    /// <summary>
    /// Mounts the <paramref name="kernelType"/> file system of <paramref name="size"/> bytes at <paramref name="offset"/>
    /// of disk.raw read-only on <paramref name="folder"/> through a read-only loop device (LoopMount).
    /// </summary>
    public void StartLoopMount(string kernelType, long offset, long size, string folder)
    {
        string losetup = ToolLocator.Find("losetup") ?? throw new MountToolException("losetup is not installed (Debian package mount).");
        string mount = ToolLocator.Find("mount") ?? throw new MountToolException("mount is not installed (Debian package mount).");
        var (code, output, errors) = RunCapture(losetup, "--find", "--show", "--read-only", "--offset", offset.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--sizelimit", size.ToString(System.Globalization.CultureInfo.InvariantCulture), DiskFile);
        string device = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault() ?? "";
        if (code != 0 || !device.StartsWith("/dev/", StringComparison.Ordinal))
            throw new MountToolException($"losetup exited with code {code}: {Flatten(errors + output)}");
        lock (_gate)
        {
            State.LoopDevices.Add(device);
            State.LoopMounts.Add(folder);
        }
        SaveState();
        (code, output, errors) = RunCapture(mount, "-t", kernelType, "-o", LoopMount.Options(kernelType), device, folder);
        if (code == 0 && IsMountPoint(folder)) return;
        Detach(device, State.PrivateFolder, null);
        lock (_gate)
        {
            State.LoopDevices.Remove(device);
            State.LoopMounts.Remove(folder);
        }
        SaveState();
        throw new MountToolException($"mount -t {kernelType} exited with code {code}: {Flatten(errors + output)}");
    }

    private static string Flatten(string text) => string.Join(' ', text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    // Detaches a loop device only when its backing file lies in our private folder (never someone else's device).
    private static void Detach(string device, string privateFolder, Action<string>? verbose)
    {
        if (privateFolder.Length == 0 || LoopMount.BackingFile(device) is not { } backing || !backing.StartsWith(privateFolder, StringComparison.Ordinal)) return;
        if (ToolLocator.Find("losetup") is not { } losetup)
        {
            verbose?.Invoke($"{device} is still attached and losetup is not installed (Debian package mount).");
            return;
        }
        if (Run(losetup, "-d", device) != 0) verbose?.Invoke($"losetup -d {device} failed.");
    }

    /// <summary>Notes a folder this mount created, to be removed (when empty) at the end.</summary>
    public void Created(string folder)
    {
        lock (_gate) State.CreatedFolders.Add(folder);
    }

    /// <summary>Unmounts everything, stops the processes and the server, removes the folders and the marker.</summary>
    public void Teardown(Action<string>? verbose = null)
    {
        Teardown(State, verbose, _processes);
        try { Server?.Dispose(); }
        catch (AggregateException) { } // the image was only read: nothing to lose
        foreach (var process in _processes) process.Dispose();
    }

    /// <summary>Tears down what <paramref name="state"/> records (a stale mount of a killed session, or a live one).</summary>
    public static void Teardown(MountState state, Action<string>? verbose, IReadOnlyList<Process>? owned = null)
    {
        string? fusermount = ToolLocator.Find("fusermount3");
        string? umount = ToolLocator.Find("umount");
        foreach (string folder in state.LoopMounts ?? new()) UnmountKernel(umount, folder, verbose);
        foreach (string device in state.LoopDevices ?? new()) Detach(device, state.PrivateFolder, verbose);
        foreach (string folder in state.PartitionMounts) Unmount(fusermount, folder, verbose);
        foreach (int pid in state.FusePids) Stop(pid, state.PrivateFolder, owned, verbose);
        Unmount(fusermount, state.NbdMount, verbose);
        if (state.NbdFusePid != 0) Stop(state.NbdFusePid, state.PrivateFolder, owned, verbose);
        foreach (string folder in state.CreatedFolders.AsEnumerable().Reverse())
        {
            try
            {
                if (Directory.Exists(folder) && !IsMountPoint(folder) && !Directory.EnumerateFileSystemEntries(folder).Any()) Directory.Delete(folder);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { verbose?.Invoke($"Could not remove {folder}: {e.Message}"); }
        }
        try
        {
            if (state.PrivateFolder.Length > 0 && Directory.Exists(state.PrivateFolder) && !IsMountPoint(state.NbdMount))
                Directory.Delete(state.PrivateFolder, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { verbose?.Invoke($"Could not remove {state.PrivateFolder}: {e.Message}"); }
        try
        {
            var marker = MarkerFile(state.MountPath);
            if (ReadState(state.MountPath) is { } onDisk && onDisk.PrivateFolder == state.PrivateFolder) File.Delete(marker);
            File.Delete(marker + ".tmp");
            if (state.CreatedFolders.Contains(state.MountPath) && Directory.Exists(state.MountPath) && !Directory.EnumerateFileSystemEntries(state.MountPath).Any())
                Directory.Delete(state.MountPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { verbose?.Invoke($"Could not remove the marker in {state.MountPath}: {e.Message}"); }
    }

    private static void Unmount(string? fusermount, string folder, Action<string>? verbose)
    {
        if (!IsMountPoint(folder)) return;
        if (fusermount == null)
        {
            verbose?.Invoke($"{folder} is still mounted and fusermount3 is not installed (Debian package fuse3).");
            return;
        }
        if (Run(fusermount, "-u", folder) == 0 && !IsMountPoint(folder)) return;
        verbose?.Invoke($"fusermount3 -u {folder} failed; detaching it lazily (-z).");
        Run(fusermount, "-u", "-z", folder);
    }

    private static void UnmountKernel(string? umount, string folder, Action<string>? verbose)
    {
        if (!IsMountPoint(folder)) return;
        if (umount == null)
        {
            verbose?.Invoke($"{folder} is still mounted and umount is not installed (Debian package mount).");
            return;
        }
        if (Run(umount, folder) == 0 && !IsMountPoint(folder)) return;
        verbose?.Invoke($"umount {folder} failed; detaching it lazily (-l).");
        Run(umount, "-l", folder);
    }

    // Stops a process this mount started: our own Process object when we have it, otherwise only when the pid still
    // names one of our processes (its command line holds the private folder), so a reused pid is never touched.
    private static void Stop(int pid, string privateFolder, IReadOnlyList<Process>? owned, Action<string>? verbose)
    {
        var mine = owned?.FirstOrDefault(p => SafeId(p) == pid);
        if (mine != null)
        {
            if (!mine.WaitForExit(5000))
            {
                verbose?.Invoke($"Process {pid} did not exit after the unmount; killing it.");
                try { mine.Kill(); mine.WaitForExit(5000); }
                catch (InvalidOperationException) { }
            }
            return;
        }
        if (!IsOurs(pid, privateFolder)) return;
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (IsOurs(pid, privateFolder) && DateTime.UtcNow < deadline) Thread.Sleep(50);
        if (!IsOurs(pid, privateFolder)) return;
        verbose?.Invoke($"Stopping process {pid}.");
        _ = kill(pid, SIGTERM);
        deadline = DateTime.UtcNow.AddSeconds(3);
        while (IsOurs(pid, privateFolder) && DateTime.UtcNow < deadline) Thread.Sleep(50);
        if (IsOurs(pid, privateFolder)) _ = kill(pid, SIGKILL);
    }

    private static int SafeId(Process p)
    {
        try { return p.Id; }
        catch (InvalidOperationException) { return -1; }
    }

    // A live (not zombie) process whose command line names the private folder.
    private static bool IsOurs(int pid, string privateFolder)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            int close = stat.LastIndexOf(')');
            if (close > 0 && close + 2 < stat.Length && stat[close + 2] == 'Z') return false;
            string cmdline = File.ReadAllText($"/proc/{pid}/cmdline");
            return privateFolder.Length > 0 && cmdline.Contains(privateFolder, StringComparison.Ordinal);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>True when a live process (not a zombie) has this pid.</summary>
    public static bool IsRunning(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            int close = stat.LastIndexOf(')');
            return !(close > 0 && close + 2 < stat.Length && stat[close + 2] == 'Z');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    // Field 22 of /proc/<pid>/stat (start time in clock ticks since boot): tells a process from a later one with its pid.
    private static string? ProcessStartTicks(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return fields.Length > 19 && fields[0] != "Z" ? fields[19] : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>True when <paramref name="folder"/> is a mount point (per /proc/self/mountinfo; stale FUSE mounts too).</summary>
    public static bool IsMountPoint(string folder)
    {
        string full = System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(folder));
        try
        {
            foreach (string line in File.ReadLines("/proc/self/mountinfo"))
            {
                var fields = line.Split(' ');
                if (fields.Length > 4 && Unescape(fields[4]) == full) return true;
            }
        }
        catch (IOException) { }
        return false;
    }

    // mountinfo escapes space, tab, newline and backslash as \ooo.
    private static string Unescape(string field)
    {
        if (!field.Contains('\\')) return field;
        var sb = new StringBuilder();
        for (int i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && IsOctal(field, i + 1))
            {
                sb.Append((char)Convert.ToInt32(field.Substring(i + 1, 3), 8));
                i += 3;
            }
            else sb.Append(field[i]);
        }
        return sb.ToString();
    }

    private static bool IsOctal(string s, int at) =>
        at + 3 <= s.Length && s[at] is >= '0' and <= '7' && s[at + 1] is >= '0' and <= '7' && s[at + 2] is >= '0' and <= '7';

    // Starts a tool in its own session (setsid), so Ctrl+C in the terminal does not reach it; output is collected.
    private Process Start(string tool, params string[] arguments)
    {
        string? setsid = ToolLocator.Find("setsid");
        var start = new ProcessStartInfo(setsid ?? tool)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        if (setsid != null) start.ArgumentList.Add(tool);
        foreach (string a in arguments) start.ArgumentList.Add(a);
        var process = new Process { StartInfo = start };
        var output = new StringBuilder();
        process.ErrorDataReceived += (_, e) => Append(output, e.Data);
        process.OutputDataReceived += (_, e) => Append(output, e.Data);
        process.Start();
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        lock (_gate) _processes.Add(process);
        _output[process] = output;
        return process;
    }

    private readonly Dictionary<Process, StringBuilder> _output = new();

    private static void Append(StringBuilder output, string? line)
    {
        if (line == null) return;
        lock (output)
        {
            if (output.Length < 4000) output.AppendLine(line);
        }
    }

    private void WaitUntil(Process process, string tool, Func<bool> ready)
    {
        var deadline = DateTime.UtcNow + ReadyTimeout;
        while (!ready())
        {
            if (process.HasExited)
            {
                process.WaitForExit();
                string text;
                var output = _output[process];
                lock (output) text = string.Join(' ', output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
                throw new MountToolException($"{tool} exited with code {process.ExitCode}{(text.Length > 0 ? ": " + text : ".")}");
            }
            _cancellation.ThrowIfCancellationRequested();
            if (DateTime.UtcNow > deadline) throw new MountToolException($"{tool} did not finish mounting within {ReadyTimeout.TotalSeconds} seconds.");
            Thread.Sleep(20);
        }
    }

    private static (int ExitCode, string Output, string Errors) RunCapture(string tool, params string[] arguments)
    {
        var start = new ProcessStartInfo(tool) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string a in arguments) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output, error.Result);
    }

    private static int Run(string tool, params string[] arguments)
    {
        var start = new ProcessStartInfo(tool) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string a in arguments) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        process.StandardOutput.ReadToEnd();
        process.StandardError.ReadToEnd();
        process.WaitForExit();
        return process.ExitCode;
    }

    private const int SIGTERM = 15, SIGKILL = 9;

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);
}

/// <summary>Finds external tools on PATH (read at each call, so a changed $env:PATH counts).</summary>
internal static class ToolLocator
{
    /// <summary>The Debian package of each tool Mount-VDisk uses.</summary>
    public static readonly IReadOnlyDictionary<string, string> Packages = new Dictionary<string, string>
    {
        ["nbdfuse"] = "libnbd-bin",
        ["fuse2fs"] = "fuse2fs",
        ["fusermount3"] = "fuse3",
    };

    /// <summary>The full path of <paramref name="name"/> on PATH, or null.</summary>
    public static string? Find(string name)
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(System.IO.Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = System.IO.Path.Combine(dir, name);
            if (!OperatingSystem.IsWindows() && File.Exists(candidate) && (File.GetUnixFileMode(candidate) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) != 0)
                return candidate;
        }
        return null;
    }
}
