// A private libvirtd + virtlogd for engine tests of live domains (TOOLCHAIN.md "A live libvirt + QEMU for tests"):
// started in a mount namespace of their own where one can be made (/run/libvirt, /etc/libvirt/qemu and
// /var/lib/libvirt/qemu bind-mounted from the test's folder, so another test run's libvirtd is not disturbed), reached
// on a private socket; domains, then daemons, stopped by pid on dispose. Like tests/Module/LibvirtSupport.ps1.
namespace VDisk.Engine.Tests.Support;

public sealed class LiveLibvirt : IDisposable
{
    private readonly List<string> _domains = new();
    private readonly List<int> _pids = new();

    private LiveLibvirt(string folder, string runDir)
    {
        Folder = folder;
        RunDir = runDir;
        Uri = $"qemu:///system?socket={folder}/libvirt-sock";
    }

    public string Folder { get; }
    public string RunDir { get; }
    public string Uri { get; }

    /// <summary>Starts the daemons; fails in CI and skips elsewhere when libvirt, QEMU or root are missing.</summary>
    public static LiveLibvirt Start()
    {
        LibvirtTools.Require("virsh", "libvirtd", "virtlogd", "qemu-system-x86_64", "qemu-img", "qemu-io", "unshare", "setsid");
        HostSetup.RequireRoot();
        string folder = Path.Combine(Path.GetTempPath(), "vdisk-libvirt-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "libvirtd.conf"), $"unix_sock_dir = \"{folder}\"\nlog_outputs = \"3:file:{folder}/libvirtd.err\"\n");
        bool isolated = HostSetup.TryRun("unshare", "-m", "--propagation", "private", "true").ExitCode == 0;
        string run = isolated ? Path.Combine(folder, "run") : "/run/libvirt";
        string start = $"virtlogd -d -p '{folder}/virtlogd.pid' && libvirtd -d -f '{folder}/libvirtd.conf' -p '{folder}/libvirtd.pid'";
        if (isolated)
        {
            foreach (string name in new[] { "run", "etc-qemu", "lib-qemu" }) Directory.CreateDirectory(Path.Combine(folder, name));
            start = $"mount --bind '{folder}/run' /run/libvirt && mount --bind '{folder}/etc-qemu' /etc/libvirt/qemu && " +
                $"mount --bind '{folder}/lib-qemu' /var/lib/libvirt/qemu && {start}";
            HostSetup.TryRun("unshare", "-m", "--propagation", "private", "sh", "-c", start);
        }
        else HostSetup.TryRun("setsid", "sh", "-c", start);
        var daemon = new LiveLibvirt(folder, run);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (DateTime.UtcNow < deadline && HostSetup.TryRun("virsh", "-q", "-c", daemon.Uri, "list", "--all", "--name").ExitCode != 0)
            Thread.Sleep(200);
        foreach (string name in new[] { "libvirtd", "virtlogd" })
            if (File.Exists(Path.Combine(folder, name + ".pid"))) daemon._pids.Add(int.Parse(File.ReadAllText(Path.Combine(folder, name + ".pid")).Trim()));
        if (daemon._pids.Count != 2 || HostSetup.TryRun("virsh", "-q", "-c", daemon.Uri, "list").ExitCode != 0)
        {
            string log = File.Exists(Path.Combine(folder, "libvirtd.err")) ? File.ReadAllText(Path.Combine(folder, "libvirtd.err")) : "";
            daemon.Dispose();
            throw new InvalidOperationException("libvirtd did not start: " + log);
        }
        return daemon;
    }

    /// <summary>Runs virsh on this daemon; throws when it fails.</summary>
    public string Virsh(params string[] args) => HostSetup.Run("virsh", new[] { "-q", "-c", Uri }.Concat(args).ToArray());

    /// <summary>Defines and starts a TCG domain (256 MiB, no OS) with the given virtio-blk qcow2 disks (vda, vdb ...).</summary>
    public void StartDomain(string name, params string[] qcow2Images)
    {
        string disks = string.Concat(qcow2Images.Select((image, i) =>
            $"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{image}'/><target dev='vd{(char)('a' + i)}' bus='virtio'/></disk>"));
        string xml = $"<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>" +
            "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices><emulator>/usr/bin/qemu-system-x86_64</emulator>" +
            disks + "</devices></domain>";
        string file = Path.Combine(Folder, name + ".xml");
        File.WriteAllText(file, xml);
        _domains.Add(name);
        Virsh("define", file);
        Virsh("start", name);
    }

    /// <summary>Target to source file as the running QEMU has it (virsh domblklist).</summary>
    public Dictionary<string, string> LiveDisks(string domain) =>
        Virsh("domblklist", domain).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Trim().Split(' ', 2, StringSplitOptions.RemoveEmptyEntries)).Where(f => f.Length == 2)
            .ToDictionary(f => f[0], f => f[1].Trim());

    public void Dispose()
    {
        foreach (string domain in _domains)
        {
            string pidFile = Path.Combine(RunDir, "qemu", domain + ".pid");
            int? qemu = File.Exists(pidFile) && int.TryParse(File.ReadAllText(pidFile).Trim(), out int p) ? p : null;
            HostSetup.TryRun("virsh", "-q", "-c", Uri, "destroy", domain);
            HostSetup.TryRun("virsh", "-q", "-c", Uri, "undefine", domain);
            if (qemu is { } id) Kill(id);
        }
        foreach (int id in _pids) Kill(id, graceful: true);
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private static void Kill(int pid, bool graceful = false)
    {
        HostSetup.TryRun("kill", graceful ? "-TERM" : "-KILL", pid.ToString());
        // Daemons are children of init, which may not reap them here: a zombie has ended too.
        for (var deadline = DateTime.UtcNow.AddSeconds(10); DateTime.UtcNow < deadline; Thread.Sleep(50))
        {
            string stat = $"/proc/{pid}/stat";
            try
            {
                if (!File.Exists(stat) || File.ReadAllText(stat).Split(')')[^1].TrimStart().StartsWith('Z')) return;
            }
            catch (IOException)
            {
                return;
            }
        }
    }
}
