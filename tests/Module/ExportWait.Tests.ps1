# Export-VDisk -Wait stopped by Ctrl+C (issue 12: "Ctrl+C stops a foreground export"), with a real child pwsh: the
# child serves an image in the foreground on TCP and a Unix socket; a client reads through it; SIGINT (what a terminal
# sends for Ctrl+C) goes to the child by its pid. The child must exit promptly, the port must refuse connections, the
# socket file must be gone and the image's lock released: a writer (qemu-io, which honours QEMU's locks) that was
# refused while the export ran now succeeds. SIGTERM is checked the same way. The child is killed by pid in AfterEach
# if it is still running.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')
    $kill = (Get-Command kill -CommandType Application -ErrorAction Stop)[0].Source

    # A child pwsh running Export-VDisk -Wait; prints 'after' if the pipeline went on past the export (it must not).
    function Start-ChildExport([string] $Image, [int] $Port, [string] $Socket, [bool] $Writable) {
        $writableArgument = if ($Writable) { '-Writable' } else { '' }
        $command = "`$ProgressPreference = 'SilentlyContinue'; Import-Module '$((Get-Module VDisk).Path)'; " +
            "Export-VDisk -LiteralPath '$Image' -Port $Port -UnixSocket '$Socket' $writableArgument -Wait -ErrorAction Stop | Out-Null; 'after'"
        $start = [System.Diagnostics.ProcessStartInfo]::new([System.Environment]::ProcessPath)
        foreach ($argument in (Join-Path $PSHOME 'pwsh.dll'), '-NoProfile', '-NonInteractive', '-Command', $command) { $start.ArgumentList.Add($argument) }
        $start.RedirectStandardOutput = $true
        $start.RedirectStandardError = $true
        $start.RedirectStandardInput = $true
        $start.Environment['NO_COLOR'] = '1'
        $process = [System.Diagnostics.Process]::Start($start)
        [pscustomobject]@{ Process = $process; Output = $process.StandardOutput.ReadToEndAsync(); Errors = $process.StandardError.ReadToEndAsync() }
    }

    function Test-Port([int] $Port) {
        $client = [System.Net.Sockets.TcpClient]::new()
        try { $client.Connect([System.Net.IPAddress]::Loopback, $Port); $true }
        catch [System.Net.Sockets.SocketException] { $false }
        catch [System.Management.Automation.MethodInvocationException] { $false }
        finally { $client.Dispose() }
    }

    function Wait-Export($Child, [int] $Port) {
        $deadline = [datetime]::UtcNow.AddSeconds(60)
        while ([datetime]::UtcNow -lt $deadline -and -not $Child.Process.HasExited) {
            if (Test-Port $Port) { return }
            Start-Sleep -Milliseconds 100
        }
        throw "The export did not start (child exited: $($Child.Process.HasExited); $($Child.Errors.Result))"
    }

    function Get-FreePort {
        $probe = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Loopback, 0)
        $probe.Start()
        try { $probe.LocalEndpoint.Port } finally { $probe.Stop() }
    }
}

Describe 'Export-VDisk -Wait stopped by a signal' -Skip:$SkipQemu {
    BeforeEach {
        $folder = New-TestFolder
        $image = "$folder/w.qcow2"
        $null = New-VDisk -Path $image -SizeBytes 16MB
        Invoke-QemuIo $image @('write -P 0x5a 1M 2M')
        $child = $null
    }
    AfterEach {
        if ($child -and -not $child.Process.HasExited) { $child.Process.Kill(); $child.Process.WaitForExit() }
    }

    It '<Signal> (<Mode>): exits promptly, closes the port and the socket, releases the image lock' -ForEach @(
        @{ Signal = 'INT'; Mode = 'read-only'; Writable = $false }
        @{ Signal = 'INT'; Mode = 'writable'; Writable = $true }
        @{ Signal = 'TERM'; Mode = 'writable'; Writable = $true }
    ) {
        $port = Get-FreePort
        $socket = "$folder/nbd.sock"
        $child = Start-ChildExport $image $port $socket $Writable
        Wait-Export $child $port

        # A client reads through both listeners while the export runs.
        $raw = "$folder/read.raw"
        Invoke-QemuImg @('convert', '-O', 'raw', "nbd://127.0.0.1:$port", $raw)
        Invoke-QemuImg @('compare', '-U', '-f', 'raw', '-F', 'qcow2', $raw, $image) | Out-Null
        $output = & qemu-io -r -f raw -c 'read -P 0x5a 1M 2M' "nbd+unix:///?socket=$socket" 2>&1
        $LASTEXITCODE | Should -Be 0 -Because ($output -join "`n")
        ($output -join ' ') | Should -Not -Match 'Pattern verification failed'
        # The export holds the image's lock: a writer is refused now (so the check after the signal means something).
        $output = & qemu-io -c 'write -P 0x77 0 64k' $image 2>&1
        $LASTEXITCODE | Should -Not -Be 0 -Because 'the running export locks the image'
        ($output -join ' ') | Should -Match 'lock'

        $watch = [System.Diagnostics.Stopwatch]::StartNew()
        & $kill -s $Signal $child.Process.Id
        $child.Process.WaitForExit(15000) | Should -BeTrue -Because "SIGINT/SIGTERM must stop the export (stderr: $($child.Errors.Result))"
        $watch.Elapsed.TotalSeconds | Should -BeLessThan 10
        $child.Output.Result | Should -Not -Match 'after' -Because 'the signal stops the pipeline, not only the export'

        Test-Port $port | Should -BeFalse
        $socket | Should -Not -Exist
        $output = & qemu-io -c 'write -P 0x77 0 64k' $image 2>&1
        $LASTEXITCODE | Should -Be 0 -Because "the lock must be released once the export stopped: $($output -join ' ')"
        (Get-QemuCheck $image).'check-errors' | Should -Be 0
        $output = & qemu-io -r -c 'read -P 0x77 0 64k' -c 'read -P 0x5a 1M 2M' $image 2>&1
        ($output -join ' ') | Should -Not -Match 'Pattern verification failed'
    }
}
